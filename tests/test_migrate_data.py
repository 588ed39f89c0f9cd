"""`retrospec migrate-data`: a SQLite install copied to PostgreSQL + S3 reads the same there,
a rerun copies only what is new, new ids follow the copied ones, a bad target fails in one line.

A real SQLite install (real ingest endpoint and jobs, a real source map upload), a real
PostgreSQL cluster and moto's S3 server; the command runs as a subprocess.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from retrospec.settings import Settings
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import connect
from tests.support.accounts import add_user
from tests.support.data import make_settings
from tests.support.envelopes import COUPON_CHROME, COUPON_MSG, cart_batch, envelope, error
from tests.support.servers import free_port
from tests.support.services import PgCluster, S3Server, read_only_bucket
from tests.support.shop import Shop, ingest, make_shop, run_cli, run_jobs, storage_env
from tests.support.sourcemaps import build_dir


def _source_env(shop: Shop, s3: S3Server) -> dict[str, str]:
    # The old (SQLite) config plus the S3 settings --blobs-to uses.
    return {**shop.env, **{f"RETROSPEC_{k.upper()}": v for k, v in s3.settings_env().items()}}


def _target(tmp_path: Path, pg: PgCluster, s3: S3Server) -> Settings:
    """Settings of the new install: an empty PostgreSQL database (no template) and S3 prefix."""
    return make_settings(
        tmp_path / "pg-node",
        database_url=pg.new_database(template=None),
        blob_url=s3.new_prefix(),
        demo=False,
        **s3.settings_env(),
    )


def _target_env(target: Settings) -> dict[str, str]:
    return {
        "RETROSPEC_DATA_DIR": str(target.data_path),
        "RETROSPEC_DEMO": "false",
        **storage_env(target),
    }


def _migrate(env: dict[str, str], target: Settings, *extra: str) -> dict[str, Any]:
    result = run_cli(
        env,
        "migrate-data",
        "--to",
        target.database_url,
        "--blobs-to",
        target.blob_url,
        "--json",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["ok"] is True
    return report


def _cli_json(env: dict[str, str], *args: str) -> Any:
    result = run_cli(env, *args, "--json")
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


def _populated(tmp_path: Path) -> Shop:
    shop = make_shop(tmp_path / "lite", n=4)
    add_user(shop.settings)
    upload = run_cli(
        shop.env, "sourcemaps", "upload", "shop", str(build_dir(tmp_path / "dist")),
        "--release", "1.4.2",
    )  # fmt: skip
    assert upload.returncode == 0, upload.stderr
    return shop


@pytest.mark.slow
def test_the_copy_reads_the_same_on_postgres_and_s3(
    pg_cluster: PgCluster, s3_server: S3Server, tmp_path: Path
) -> None:
    shop = _populated(tmp_path)
    target = _target(tmp_path, pg_cluster, s3_server)
    report = _migrate(_source_env(shop, s3_server), target)

    tables = {t["table"]: t for t in report["tables"]}
    assert "schema_migrations" not in tables  # the target's own migrations write it
    for name in ("sites", "sessions", "chunks", "failures", "clusters", "users", "meta"):
        assert tables[name]["source"] > 0, name
    assert all(t["source"] == t["target"] == t["copied"] for t in tables.values())
    lite = BlobStore(shop.settings.effective_blob_url)
    keys = [k for k, _size, _mtime in lite.walk("") if not lite.is_temp(k)]
    prefixes = {k.split("/", 1)[0] for k in keys}
    assert {"chunks", "replays", "sourcemaps"} <= prefixes
    blobs = report["blobs"]
    assert blobs["source"] == blobs["target"] == blobs["copied"] == len(keys)
    assert blobs["missing"] == 0 and blobs["skipped"] == 0

    old, new = shop.env, _target_env(target)
    listed = _cli_json(old, "issues", "list", "--status", "all")
    assert listed["issues"], listed
    assert _cli_json(new, "issues", "list", "--status", "all") == listed
    for issue in listed["issues"]:
        shown = _cli_json(old, "issues", "show", str(issue["id"]))
        assert _cli_json(new, "issues", "show", str(issue["id"])) == shown
    assert _cli_json(new, "sessions", "list") == _cli_json(old, "sessions", "list")
    assert _cli_json(new, "sourcemaps", "list", "shop") == _cli_json(
        old, "sourcemaps", "list", "shop"
    )

    # Replay artifacts: the same bytes under the same keys in the bucket.
    conn = connect(shop.settings.database)
    replays = [
        str(r[0])
        for r in conn.execute("SELECT replay_key FROM sessions WHERE replay_key IS NOT NULL")
    ]
    conn.close()
    assert len(replays) == len(shop.sessions)
    s3 = BlobStore(target.effective_blob_url, target.blob_options)
    for key in replays:
        assert s3.get_raw(key) == lite.get_raw(key)
        assert s3.get(key) == lite.get(key)


@pytest.mark.slow
def test_a_rerun_copies_only_what_is_new_and_new_ids_follow_the_copied_ones(
    pg_cluster: PgCluster, s3_server: S3Server, tmp_path: Path
) -> None:
    shop = make_shop(tmp_path / "lite", n=3)
    target = _target(tmp_path, pg_cluster, s3_server)
    env = _source_env(shop, s3_server)
    first = _migrate(env, target)
    before = {t["table"]: t["target"] for t in first["tables"]}

    # The old server took more meanwhile: one new session with a new bug.
    late = str(uuid.uuid4())
    ingest(shop.settings, shop.key, [cart_batch(late, user="late", message="late bug")])
    run_jobs(shop.settings, "cluster", "replays")
    again = _migrate(env, target)
    tables = {t["table"]: t for t in again["tables"]}
    assert all(t["source"] == t["target"] for t in tables.values())
    for name, t in tables.items():
        assert t["copied"] == t["target"] - before[name], name  # nothing copied twice
    assert tables["sessions"]["copied"] == 1
    assert tables["failures"]["copied"] == 1
    assert tables["sites"]["copied"] == 0
    assert 0 < again["blobs"]["copied"] < again["blobs"]["source"]
    assert again["blobs"]["skipped"] == first["blobs"]["source"]

    # A third run has nothing left to do.
    third = _migrate(env, target)
    assert sum(t["copied"] for t in third["tables"]) == 0 and third["blobs"]["copied"] == 0

    # After the cut-over the new install ingests, and identity columns continue past the copy.
    lite = connect(shop.settings.database)
    top_failure = lite.execute("SELECT max(id) FROM failures").fetchone()[0]
    top_cluster = lite.execute("SELECT max(id) FROM clusters").fetchone()[0]
    top_run = lite.execute("SELECT max(id) FROM job_runs").fetchone()[0]
    lite.close()
    session = {"id": str(uuid.uuid4()), "url": "https://shop.example/coupon"}
    body = envelope(session, 0, failures=[error(COUPON_CHROME, COUPON_MSG)])
    ingest(target, shop.key, [body])
    run_jobs(target, "cluster")
    pg = connect(target.database)
    try:
        fresh = pg.execute(
            "SELECT f.id, f.cluster_id FROM failures f WHERE f.session_id = ?", (session["id"],)
        ).fetchall()
        assert len(fresh) == 1
        assert fresh[0][0] == top_failure + 1
        assert fresh[0][1] == top_cluster + 1  # a new bug: a new cluster, the next id
        assert pg.execute("SELECT max(id) FROM job_runs").fetchone()[0] > top_run
    finally:
        pg.close()


def test_an_unreachable_target_fails_in_one_line_naming_to(tmp_path: Path) -> None:
    shop_env = {"RETROSPEC_DATA_DIR": str(tmp_path / "lite"), "RETROSPEC_DEMO": "false"}
    settings = make_settings(tmp_path / "lite", demo=False)
    from retrospec.storage.migrations import prepare_database

    prepare_database(settings.database)
    url = f"postgresql://u:secretpw@127.0.0.1:{free_port()}/x"
    result = run_cli(shop_env, "migrate-data", "--to", url)
    assert result.returncode != 0
    assert result.stdout == ""  # no table, nothing claimed copied
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--to" in lines[0] and "cannot connect" in lines[0]
    assert "secretpw" not in lines[0]
    not_pg = run_cli(shop_env, "migrate-data", "--to", str(tmp_path / "other.sqlite3"))
    assert not_pg.returncode != 0 and "--to" in not_pg.stderr and not_pg.stdout == ""


@pytest.mark.slow
def test_bad_targets_fail_in_one_line_and_copy_nothing(
    pg_cluster: PgCluster, s3_server: S3Server, tmp_path: Path
) -> None:
    shop = make_shop(tmp_path / "lite", n=1)
    env = _source_env(shop, s3_server)
    target = _target(tmp_path, pg_cluster, s3_server)
    cases = {
        "password": (["--to", pg_cluster.url("postgres", password="wrong")], "--to"),
        "bucket": (
            ["--to", target.database_url, "--blobs-to", "s3://no-such-bucket/x"],
            "--blobs-to",
        ),
        "read-only": (
            ["--to", target.database_url, "--blobs-to", f"s3://{read_only_bucket(s3_server)}/x"],
            "--blobs-to",
        ),
    }
    for case, (args, option) in cases.items():
        result = run_cli(env, "migrate-data", *args)
        assert result.returncode != 0, case
        assert result.stdout == "", case
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (case, result.stderr)
        assert lines[0].startswith(f"error: {option}: "), (case, lines[0])
        assert "wrong" not in lines[0]
    # The bucket was checked before any row moved.
    pg = connect(target.database_url)
    try:
        assert pg.execute("SELECT count(*) FROM sites").fetchone()[0] == 0
    finally:
        pg.close()
