"""`retrospec jobs run|list` and `retrospec purge`: output, --json schemas, exit codes, signals."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from retrospec import scheduler
from retrospec.errors import ConfigError
from retrospec.jobs.context import JobContext, JobResult
from tests.support.data import add_site, make_settings
from tests.support.envelopes import cart_batch
from tests.support.paths import REPO
from tests.support.shop import DAY_MS, Shop, age_sessions, ingest, invoke, make_shop, run_cli

HOUR = 3_600_000
PURGE_KEYS = {
    "schema_version",
    "status",
    "dry_run",
    "now",
    "older_than_s",
    "cutoff",
    "site_cutoffs",
    "removed",
    "artifacts",
    "bytes_freed",
    "blob_bytes_freed",
    "payload_bytes_freed",
    "job_runs_pruned",
    "errors",
    "error_messages",
    "elapsed_s",
    "artifacts_per_s",
    "disk",
}


def explode(ctx: JobContext) -> JobResult:
    """A job that raises (registered over a real one with monkeypatch)."""
    raise RuntimeError("kaboom")


def half_broken(ctx: JobContext) -> JobResult:
    """A job that finishes with errors."""
    return JobResult(items=3, errors=1, message="1 of 3 failed")


def fresh_shop(tmp_path: Path) -> Shop:
    """A site with two sessions ingested but no job run yet."""
    settings = make_settings(tmp_path / "data", demo=False)
    _, key = add_site(settings)
    sessions = [str(uuid.uuid4()) for _ in range(2)]
    ingest(settings, key, (cart_batch(s, user=f"u{i}") for i, s in enumerate(sessions)))
    return Shop(settings, key, sessions)


# --- jobs run ------------------------------------------------------------------------------


def test_jobs_run_each_job(tmp_path: Path) -> None:
    shop = fresh_shop(tmp_path)
    cluster = invoke(shop, "jobs", "run", "cluster")
    assert cluster.exit_code == 0, cluster.output
    assert cluster.stdout.startswith("cluster: ok, 2 items, 0 errors")
    replays = invoke(shop, "jobs", "run", "replays", "--json")
    assert replays.exit_code == 0, replays.output
    doc = json.loads(replays.stdout)
    assert set(doc) == {"schema_version", "job", "status", "items", "errors", "message", "details"}
    assert (doc["job"], doc["status"], doc["items"], doc["errors"]) == ("replays", "ok", 2, 0)
    purge = invoke(shop, "jobs", "run", "purge", "--json")
    assert purge.exit_code == 0, purge.output
    doc = json.loads(purge.stdout)
    assert doc["job"] == "purge" and doc["items"] == 0
    assert doc["details"]["removed"]["chunks"] == 0  # nothing is old enough
    again = json.loads(invoke(shop, "jobs", "run", "cluster", "--json").stdout)
    assert again["items"] == 0  # idempotent


def test_jobs_run_failures_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = fresh_shop(tmp_path)
    monkeypatch.setitem(scheduler.JOBS, "cluster", explode)
    failed = invoke(shop, "jobs", "run", "cluster")
    assert failed.exit_code == 1
    assert "job cluster failed: RuntimeError: kaboom" in str(failed.exception)
    monkeypatch.setitem(scheduler.JOBS, "replays", half_broken)
    partial = invoke(shop, "jobs", "run", "replays")
    assert partial.exit_code == 1 and "partial, 3 items, 1 errors" in partial.stdout
    assert "finished with 1 errors" in str(partial.exception)
    runs = json.loads(invoke(shop, "jobs", "list", "--json").stdout)["runs"]
    assert [(r["job"], r["status"]) for r in runs[:2]] == [
        ("replays", "partial"),
        ("cluster", "error"),
    ]


def test_jobs_run_unknown_job_is_a_usage_error(tmp_path: Path) -> None:
    shop = fresh_shop(tmp_path)
    assert invoke(shop, "jobs", "run", "backup").exit_code == 2
    assert invoke(shop, "jobs", "run").exit_code == 2


# --- jobs list -----------------------------------------------------------------------------


def test_jobs_list_table_and_json(tmp_path: Path) -> None:
    shop = fresh_shop(tmp_path)
    assert "no job runs yet" in invoke(shop, "jobs", "list").stdout
    for name in ("cluster", "replays", "cluster"):
        assert invoke(shop, "jobs", "run", name).exit_code == 0
    table = invoke(shop, "jobs", "list")
    assert table.exit_code == 0, table.output
    lines = [line.split("\t") for line in table.stdout.splitlines()]
    assert "job" in lines[0] and "status" in lines[0]
    job = lines[0].index("job")
    assert [row[job] for row in lines[1:]] == ["cluster", "replays", "cluster"]  # newest first
    doc = json.loads(invoke(shop, "jobs", "list", "--json").stdout)
    assert set(doc) == {"schema_version", "runs"}
    run = doc["runs"][0]
    assert set(run) == {
        "id",
        "job",
        "trigger",
        "started_at",
        "finished_at",
        "duration_s",
        "status",
        "items",
        "errors",
        "message",
    }
    assert (run["job"], run["trigger"], run["status"]) == ("cluster", "cli", "ok")
    assert run["duration_s"] >= 0 and run["started_at"].endswith("Z")
    only = json.loads(invoke(shop, "jobs", "list", "--json", "--job", "replays").stdout)
    assert [r["job"] for r in only["runs"]] == ["replays"]
    assert (
        len(json.loads(invoke(shop, "jobs", "list", "--json", "--limit", "2").stdout)["runs"]) == 2
    )
    assert invoke(shop, "jobs", "list", "--job", "nope").exit_code == 2


# --- purge ---------------------------------------------------------------------------------


def test_purge_dry_run_then_real_run_then_nothing(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=3)
    age_sessions(shop.settings.database, shop.sessions[:2], 9 * DAY_MS)

    dry = invoke(shop, "purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would remove 2 chunks, 2 replays, 2 failure payloads, 0 orphan files" in dry.stdout
    assert "would free" in dry.stdout and "retention 7 days" in dry.stdout
    dry_doc = json.loads(invoke(shop, "purge", "--dry-run", "--json").stdout)
    assert dry_doc["dry_run"] is True

    real = invoke(shop, "purge", "--json")
    assert real.exit_code == 0, real.output
    doc = json.loads(real.stdout)
    assert set(doc) == PURGE_KEYS
    assert doc["status"] == "ok" and doc["dry_run"] is False and doc["errors"] == 0
    assert doc["removed"] == {
        "chunks": 2,
        "replays": 2,
        "payloads": 2,
        "sourcemaps": 0,
        "clips": 0,
        "orphans": 0,
        "temp_files": 0,
        "resumed": 0,
    }
    assert doc["artifacts"] == 6
    assert doc["bytes_freed"] == doc["blob_bytes_freed"] + doc["payload_bytes_freed"] > 0
    assert doc["bytes_freed"] == dry_doc["bytes_freed"]  # the dry run predicted it
    assert set(doc["disk"]) == {"free_bytes", "floor_bytes", "low"}
    assert doc["older_than_s"] is None and doc["cutoff"].endswith("Z")

    again = invoke(shop, "purge")
    assert again.exit_code == 0
    assert "removed 0 chunks, 0 replays, 0 failure payloads, 0 orphan files" in again.stdout
    runs = json.loads(invoke(shop, "jobs", "list", "--json", "--job", "purge").stdout)["runs"]
    assert [r["items"] for r in runs] == [0, 6]  # the dry runs are not recorded


def test_purge_older_than_and_orphan_grace(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=2)
    age_sessions(shop.settings.database, shop.sessions[:1], 2 * HOUR)
    kept = invoke(shop, "purge", "--json", "--older-than", "3h")
    assert json.loads(kept.stdout)["removed"]["chunks"] == 0
    doc = json.loads(invoke(shop, "purge", "--json", "--older-than", "90m").stdout)
    assert doc["older_than_s"] == 5400 and doc["removed"]["chunks"] == 1
    text = invoke(shop, "purge", "--older-than", "0.5d", "--orphan-grace", "10m")
    assert text.exit_code == 0 and "older than 43200s" in text.stdout
    bad = invoke(shop, "purge", "--older-than", "soon")
    assert isinstance(bad.exception, ConfigError)  # exit 2 through cli.main
    assert "cannot read duration 'soon'" in str(bad.exception)
    assert isinstance(invoke(shop, "purge", "--orphan-grace=-1h").exception, ConfigError)


@pytest.mark.slow
def test_purge_interrupted_by_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=6)
    age_sessions(shop.settings.database, shop.sessions, 9 * DAY_MS)
    env = {**shop.env, "RETROSPEC_JOB_BATCH_SIZE": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrospec", "purge", "--pause-between-batches", "0.5"],
        env={**_base_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    db = shop.settings.db_path
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT count(*) FROM chunks WHERE blob_key IS NULL").fetchone()[0]:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "interrupted; run it again" in err and "Traceback" not in err
    with sqlite3.connect(db) as conn:
        status = conn.execute("SELECT status FROM job_runs WHERE job = 'purge'").fetchone()[0]
    assert status == "stopped"
    finished = run_cli(shop.env, "purge", "--json")
    assert finished.returncode == 0, finished.stderr
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM chunks WHERE blob_key IS NOT NULL").fetchone()[0]
            == 0
        )
        assert conn.execute("SELECT count(*) FROM purge_queue").fetchone()[0] == 0


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}


@pytest.mark.slow
def test_entry_point_exit_codes(tmp_path: Path) -> None:
    shop = fresh_shop(tmp_path)
    ok = run_cli(shop.env, "jobs", "run", "cluster")
    assert ok.returncode == 0 and ok.stdout.startswith("cluster: ok")
    bad_duration = run_cli(shop.env, "purge", "--older-than", "soon")
    assert bad_duration.returncode == 2
    assert bad_duration.stderr.startswith("error: cannot read duration 'soon'")
    unknown = run_cli(shop.env, "jobs", "run", "backup")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    nodb = run_cli({"RETROSPEC_DATA_DIR": str(tmp_path / "none")}, "purge")
    assert nodb.returncode == 1 and "no RetroSpec database" in nodb.stderr
