"""What `retrospec serve` switches on by itself: the demo (loopback only unless demo = true, with
its failures promoting like any site's), the one-line warnings, the recorded served URL, and
data files only the server's user can read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from retrospec.settings import load_settings
from retrospec.sites import demo_key
from retrospec.startup import instance_secret, warnings
from tests.support.browser import query, wait_for
from tests.support.data import add_site
from tests.support.envelopes import cart_batch
from tests.support.servers import ServerProcess

Serve = Callable[..., ServerProcess]


def test_demo_is_on_only_on_loopback_unless_asked_for() -> None:
    def demo(**env: str) -> bool:
        values = {f"RETROSPEC_{k.upper()}": v for k, v in env.items()}
        return load_settings(None, env=values).settings.demo_enabled

    assert demo() and demo(host="localhost") and demo(host="::1")
    assert not demo(host="0.0.0.0") and not demo(host="192.0.2.10")
    assert demo(host="0.0.0.0", demo="true") and demo(host="0.0.0.0", demo="on")
    assert not demo(demo="false") and not demo(demo="0")


def test_warnings_name_what_is_public() -> None:
    public = load_settings(None, env={"RETROSPEC_HOST": "0.0.0.0"}).settings
    (line,) = warnings(public, demo=False)
    assert "without public_url" in line
    both = warnings(public, demo=True)
    assert len(both) == 2 and "anyone who can reach 0.0.0.0" in both[0]
    local = load_settings(None, env={}).settings
    (line,) = warnings(local, demo=True)
    assert "demo = false" in line and "\n" not in line
    configured = load_settings(
        None, env={"RETROSPEC_HOST": "0.0.0.0", "RETROSPEC_PUBLIC_URL": "https://rs.example"}
    ).settings
    assert warnings(configured, demo=False) == []


@pytest.mark.slow
def test_serve_beyond_loopback_has_no_demo_and_revokes_its_key(serve: Serve) -> None:
    local = serve()
    assert httpx.get(f"{local.base_url}/demo").status_code == 200
    assert "Warning: /demo is on" in local.log()
    key = demo_key(instance_secret(local.settings))
    url = f"{local.base_url}/api/v1/ingest"
    assert (
        httpx.post(url, params={"key": key}, json=cart_batch(str(uuid.uuid4()))).status_code == 202
    )
    local.stop()

    # The same data dir, now listening on every address: no /demo, and its public key is dead.
    public = serve(data_dir=local.data_dir, host="0.0.0.0")
    assert httpx.get(f"{public.base_url}/demo").status_code == 404
    refused = httpx.post(
        f"{public.base_url}/api/v1/ingest", params={"key": key}, json=cart_batch(str(uuid.uuid4()))
    )
    assert refused.status_code == 401
    log = public.log()
    assert "Demo page" not in log and "without public_url" in log
    public.stop()

    # Asked for explicitly, it is on, with the louder warning.
    loud = serve(data_dir=local.data_dir, host="0.0.0.0", demo="true")
    assert httpx.get(f"{loud.base_url}/demo").status_code == 200
    assert "anyone who can reach 0.0.0.0" in loud.log()
    ok = httpx.post(
        f"{loud.base_url}/api/v1/ingest", params={"key": key}, json=cart_batch(str(uuid.uuid4()))
    )
    assert ok.status_code == 202


@pytest.mark.slow
def test_one_demo_failure_does_not_open_an_issue(serve: Serve) -> None:
    server = serve(cluster_interval_seconds="0.3")
    key = demo_key(instance_secret(server.settings))
    url = f"{server.base_url}/api/v1/ingest"
    db = server.settings.db_path
    batch = cart_batch(str(uuid.uuid4()))
    assert httpx.post(url, params={"key": key}, json=batch).status_code == 202
    wait_for(lambda: query(db, "SELECT 1 FROM clusters WHERE site_id = 'demo'"), what="a cluster")
    time.sleep(1)
    assert query(db, "SELECT status FROM clusters WHERE site_id = 'demo'")[0][0] == "candidate"
    # The same failure from a second session: now it is an issue, as on any site.
    batch = cart_batch(str(uuid.uuid4()))
    assert httpx.post(url, params={"key": key}, json=batch).status_code == 202
    wait_for(
        lambda: query(db, "SELECT 1 FROM clusters WHERE site_id = 'demo' AND status = 'open'"),
        what="the issue",
    )


@pytest.mark.slow
def test_cli_links_match_the_running_server(serve: Serve) -> None:
    server = serve()  # started with --port N; the settings alone would say 8080
    assert server.settings.port == 8080 and server.port != 8080
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    env["RETROSPEC_DATA_DIR"] = str(server.data_dir)
    added = subprocess.run(
        [sys.executable, "-m", "retrospec", "users", "add", "ops", "--password-stdin"],
        input="correct horse battery\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert f"sign in at {server.base_url}/login" in added.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_data_files_are_private(serve: Serve) -> None:
    server = serve()
    _, key = add_site(server.settings, "shop")
    url = f"{server.base_url}/api/v1/ingest"
    assert (
        httpx.post(url, params={"key": key}, json=cart_batch(str(uuid.uuid4()))).status_code == 202
    )
    data = server.data_dir
    assert mode(data) == 0o700
    for name in ("retrospec.sqlite3", "retrospec.sqlite3-wal", "retrospec.sqlite3-shm", "secret"):
        assert mode(data / name) == 0o600, name
    blobs = [p for p in (data / "blobs").rglob("*")]
    assert blobs and all(mode(p) == (0o700 if p.is_dir() else 0o600) for p in blobs)
