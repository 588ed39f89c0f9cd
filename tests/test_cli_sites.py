"""`retrospec sites add|list|origins|rotate-key` through typer's runner and a real subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from retrospec.cli import main as cli
from retrospec.sites import hash_key


def _run(data: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, list(args), env={"RETROSPEC_DATA_DIR": str(data)})
    return result.exit_code, result.output


def test_add_list_origins_and_rotate(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out = _run(data, "sites", "add", "shop", "--origin", "https://Shop.Example/", "--json")
    assert code == 0, out
    added = json.loads(out)
    assert added["name"] == "shop" and added["origins"] == ["https://shop.example"]
    assert added["key"].startswith("rsk_")
    with sqlite3.connect(data / "retrospec.sqlite3") as conn:
        stored = [r[0] for r in conn.execute("SELECT key_hash FROM site_keys")]
    assert stored == [hash_key(added["key"])]  # only the digest is stored
    assert added["key"] not in (data / "retrospec.sqlite3").read_bytes().decode("latin-1")

    code, out = _run(data, "sites", "list", "--json")
    listed = json.loads(out)
    assert listed[0]["id"] == added["id"] and listed[0]["any_origin"] is False
    assert listed[0]["key_prefixes"] == [added["key"][:10]]

    code, out = _run(data, "sites", "origins", "shop", "--json")
    assert code == 0 and json.loads(out)["origins"] == []
    code, out = _run(data, "sites", "list", "--json")
    assert json.loads(out)[0]["any_origin"] is True

    code, out = _run(data, "sites", "rotate-key", added["id"], "--json")
    assert code == 0
    new_key = json.loads(out)["key"]
    assert new_key != added["key"]
    with sqlite3.connect(data / "retrospec.sqlite3") as conn:
        rows = dict(conn.execute("SELECT key_hash, revoked_at IS NOT NULL FROM site_keys"))
    assert rows == {hash_key(added["key"]): 1, hash_key(new_key): 0}


def test_errors_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert _run(data, "sites", "add", "shop")[0] == 0
    env = {"RETROSPEC_DATA_DIR": str(data), "PATH": "/usr/bin:/bin"}
    for args, code, text in (
        (["sites", "add", "shop"], 1, "already exists"),
        (["sites", "add", "bad/name"], 1, "site name must be"),
        (["sites", "add", "x", "--origin", "ftp://x"], 1, "origin must look like"),
        (["sites", "rotate-key", "nope"], 1, "no site 'nope'"),
        (["sites", "origins"], 2, "Missing argument"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "retrospec", *args], env=env, capture_output=True, text=True
        )
        assert proc.returncode == code, (args, proc.stderr)
        assert text in proc.stderr, (args, proc.stderr)
        assert proc.stdout == ""


def test_sites_carry_a_sentry_dsn_that_admits_their_data(tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from retrospec.sites import site_for_key
    from retrospec.storage.db import connect

    data = tmp_path / "d"
    env = {"RETROSPEC_DATA_DIR": str(data), "RETROSPEC_PUBLIC_URL": "https://rs.example/base/"}
    runner = CliRunner()
    first = json.loads(runner.invoke(cli.app, ["sites", "add", "shop", "--json"], env=env).output)
    second = json.loads(runner.invoke(cli.app, ["sites", "add", "blog", "--json"], env=env).output)
    dsn = urlsplit(first["dsn"])
    assert (dsn.scheme, dsn.hostname, dsn.path) == ("https", "rs.example", "/base/1")
    assert dsn.username and len(dsn.username) == 32 and dsn.username.isalnum()
    assert urlsplit(second["dsn"]).path == "/base/2"
    listed = json.loads(runner.invoke(cli.app, ["sites", "list", "--json"], env=env).output)
    assert [s["dsn"] for s in listed] == [first["dsn"], second["dsn"]]  # shown at any time
    conn = connect(data / "retrospec.sqlite3")
    try:
        found = site_for_key(conn, dsn.username)
        assert found is not None and found.id == first["id"] and found.project_id == 1
        rotated = json.loads(
            runner.invoke(cli.app, ["sites", "rotate-key", "shop", "--json"], env=env).output
        )
        assert rotated["dsn"] != first["dsn"] and urlsplit(rotated["dsn"]).path == "/base/1"
        assert site_for_key(conn, dsn.username) is None  # the old DSN stops working
    finally:
        conn.close()
    code, out = _run(data, "sites", "list")
    assert code == 0 and "Sentry DSN" in out
