"""Retention: purge removes exactly the expired artifacts, keeps issues, resumes after a kill.

Library tests drive retention.purge with an explicit `now`; the server tests run `retrospec purge`
as a separate process against a live `retrospec serve` taking ingest traffic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrospec import retention
from retrospec.clock import now_ms
from retrospec.ingest.prepare import compress_events, decode_envelope, event_bytes, prepare
from retrospec.ingest.write import store_batches
from retrospec.jobs.context import JobContext
from retrospec.scheduler import JobFailed, run_job
from retrospec.settings import Settings
from retrospec.sites import Site
from retrospec.storage.blobs import (
    BlobStore,
    chunk_key,
    compress,
    read_chunk,
    replay_key,
    segment_key,
)
from retrospec.storage.db import DirectWriter, connect, transaction
from tests.support.data import add_site, make_settings
from tests.support.envelopes import cart_batch
from tests.support.paths import REPO
from tests.support.servers import ServerProcess
from tests.support.shop import DAY_MS, Shop, age_sessions, ingest, make_shop, run_jobs

HOUR_MS = 3_600_000


# --- helpers -------------------------------------------------------------------------------


Make = Callable[..., Settings]


def job_ctx(settings: Settings, conn: sqlite3.Connection, **options: Any) -> JobContext:
    return JobContext(
        settings=settings,
        blobs=BlobStore(settings.effective_blob_url),
        write=DirectWriter(conn).call,
        options=options,
    )


def do_purge(settings: Settings, **kwargs: Any) -> retention.PurgeReport:
    conn = connect(settings.database)
    try:
        return retention.purge(job_ctx(settings, conn), **kwargs)
    finally:
        conn.close()


def blob_root(settings: Settings) -> Path:
    return Path(settings.effective_blob_url)


def files(settings: Settings, prefix: str) -> set[str]:
    """Keys of every object under prefix (local directory or S3), temp files included."""
    return {key for key, _size, _mtime in BlobStore(settings.effective_blob_url).walk(prefix)}


def q(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(settings.database)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def live_keys(settings: Settings) -> tuple[set[str], set[str]]:
    """Blob keys rows point at: (chunk keys, replay keys)."""
    chunks = {r[0] for r in q(settings, "SELECT blob_key FROM chunks WHERE blob_key IS NOT NULL")}
    replays = {
        r[0] for r in q(settings, "SELECT replay_key FROM sessions WHERE replay_key IS NOT NULL")
    }
    return chunks, replays


def sessions_with_chunk_files(settings: Settings) -> set[str]:
    """Sessions with a chunk row pointing at a blob that is on disk."""
    on_disk = files(settings, "chunks")
    rows = q(settings, "SELECT session_id, blob_key FROM chunks WHERE blob_key IS NOT NULL")
    return {sid for sid, key in rows if key in on_disk}


def assert_consistent(settings: Settings) -> None:
    """No row points at a missing blob, and no blob lacks a row (the queue is drained)."""
    chunks, replays = live_keys(settings)
    assert chunks == files(settings, "chunks"), "dangling chunk rows or orphan chunk blobs"
    assert replays == files(settings, "replays"), "dangling replay rows or orphan replays"
    assert q(settings, "SELECT count(*) FROM purge_queue") == [(0,)]


def issue_snapshot(settings: Settings) -> list[tuple[Any, ...]]:
    return q(
        settings,
        "SELECT id, status, title, failure_count, session_count, user_count, first_seen_at, "
        "last_seen_at FROM clusters ORDER BY id",
    )


def spread_over_days(shop: Shop, days: int = 10) -> dict[str, int]:
    """Age session i by i days plus an hour (so no session sits on a cutoff); returns ages."""
    ages = {}
    for i, sid in enumerate(shop.sessions):
        age = (i % days) * DAY_MS + HOUR_MS
        age_sessions(shop.settings.database, [sid], age)
        ages[sid] = age
    return ages


# --- library: exactly the expired artifacts ---------------------------------------------------


@pytest.mark.backends
def test_purge_removes_exactly_what_is_past_retention(
    tmp_path: Path, backend_settings: Make
) -> None:
    shop = make_shop(
        tmp_path / "data", n=10, settings=backend_settings(tmp_path / "data", demo=False)
    )
    s = shop.settings
    # A second batch per session, so sessions carry several chunks.
    ingest(
        s, shop.key, (cart_batch(sid, 1, user=f"user{i}") for i, sid in enumerate(shop.sessions))
    )
    run_jobs(s, "cluster", "replays")
    ages = spread_over_days(shop)
    expired = {sid for sid, age in ages.items() if age > 7 * DAY_MS}
    kept = set(shop.sessions) - expired
    assert len(expired) == 3  # 7, 8 and 9 days (+1 h) old
    issues_before = issue_snapshot(s)
    markers_before = q(s, "SELECT count(*) FROM replay_markers")
    chunk_files = files(s, "chunks")
    replay_files = files(s, "replays")
    assert len(chunk_files) == 20 and len(replay_files) == 10

    preview = do_purge(s, dry_run=True)
    assert (preview.chunks, preview.replays, preview.payloads) == (6, 3, 6)
    assert files(s, "chunks") == chunk_files  # a dry run changes nothing

    report = do_purge(s)
    assert (report.chunks, report.replays, report.payloads) == (6, 3, 6)
    assert report.orphans == report.temp_files == report.errors == 0
    assert report.blob_bytes > 0 and report.payload_bytes > 0
    assert preview.blob_bytes == report.blob_bytes  # the dry run predicted the bytes

    for sid, blob_key, purged_at in q(s, "SELECT session_id, blob_key, purged_at FROM chunks"):
        assert (blob_key is None) == (sid in expired)
        assert (purged_at is not None) == (sid in expired)
    for sid, status, key, expired_at, chunks, replay_chunks in q(
        s, "SELECT id, replay_status, replay_key, expired_at, chunks, replay_chunks FROM sessions"
    ):
        if sid in expired:
            assert (status, key) == ("expired", None) and expired_at is not None
            assert replay_chunks == chunks  # nothing left for the replay job to build
        else:
            assert status == "ready" and key is not None and expired_at is None
    for sid, payload, message in q(s, "SELECT session_id, payload, message FROM failures"):
        assert (payload is None) == (sid in expired)
        assert message  # the short summary stays
    assert sessions_with_chunk_files(s) == kept
    assert {f.split("/")[2] for f in files(s, "replays")} == kept
    assert issue_snapshot(s) == issues_before
    assert q(s, "SELECT count(*) FROM replay_markers") == markers_before
    assert_consistent(s)

    again = do_purge(s)
    assert again.artifacts == 0 and again.bytes_freed == 0
    assert issue_snapshot(s) == issues_before


@pytest.mark.backends
def test_per_site_retention_and_older_than(tmp_path: Path, backend_settings: Make) -> None:
    shop = make_shop(
        tmp_path / "data", n=2, settings=backend_settings(tmp_path / "data", demo=False)
    )
    s = shop.settings
    _, blog_key = add_site(s, "blog")
    blog = [str(uuid.uuid4()) for _ in range(2)]
    ingest(s, blog_key, (cart_batch(sid, message="blog broke") for sid in blog))
    run_jobs(s, "cluster", "replays")
    age_sessions(s.database, [*shop.sessions, *blog], 3 * DAY_MS)
    conn = connect(s.database)
    with contextlib.closing(conn), transaction(conn):
        conn.execute("UPDATE sites SET retention_days = 2 WHERE name = 'blog'")

    report = do_purge(s)
    assert (report.chunks, report.replays) == (2, 2)  # only blog's 3-day-old data
    assert report.site_cutoffs and report.as_dict()["site_cutoffs"]
    expired = {r[0] for r in q(s, "SELECT id FROM sessions WHERE replay_status = 'expired'")}
    assert expired == set(blog)

    # --older-than applies to every site, overriding both retention_days and the site's.
    report = do_purge(s, older_than_s=2 * 86400)
    assert (report.chunks, report.replays) == (2, 2)
    assert q(s, "SELECT count(*) FROM chunks WHERE blob_key IS NOT NULL") == [(0,)]
    assert_consistent(s)


@pytest.mark.backends
def test_now_parameter_moves_the_cutoff(tmp_path: Path, backend_settings: Make) -> None:
    shop = make_shop(
        tmp_path / "data", n=2, settings=backend_settings(tmp_path / "data", demo=False)
    )
    s = shop.settings
    assert do_purge(s).artifacts == 0
    report = do_purge(s, now=now_ms() + 8 * DAY_MS)
    assert (report.chunks, report.replays, report.payloads) == (2, 2, 2)
    assert_consistent(s)


def test_unclustered_failures_keep_their_payload(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", demo=False)
    _, key = add_site(settings)
    sid = str(uuid.uuid4())
    ingest(settings, key, [cart_batch(sid)])  # the cluster job has not run
    age_sessions(settings.database, [sid], 30 * DAY_MS)
    report = do_purge(settings)
    assert report.payloads == 0 and report.chunks == 1
    assert q(settings, "SELECT payload IS NOT NULL FROM failures") == [(1,)]
    run_jobs(settings, "cluster")
    assert do_purge(settings).payloads == 1  # grouped now, so the stack may go


# --- library: orphan sweep -----------------------------------------------------------------


def test_orphan_sweep_respects_the_grace_period(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=1)
    s = shop.settings
    blobs = BlobStore(s.effective_blob_url)
    root = blob_root(s)
    site_id = q(s, "SELECT id FROM sites")[0][0]
    sid = shop.sessions[0]
    old = time.time() - 7200
    orphan_chunk = chunk_key(site_id, sid, 99, b"never committed")
    orphan_replay = replay_key(site_id, sid, 99)  # a version no row points at (a crashed build)
    gone_session = chunk_key(site_id, "deleted-session-1", 0, b"x")
    fresh_orphan = chunk_key(site_id, sid, 100, b"in flight")
    referenced = files(s, "chunks") | files(s, "replays")
    for key in (orphan_chunk, orphan_replay, gone_session, fresh_orphan):
        blobs.put(key, b"data")
    stale_tmp = root / f"{chunk_key(site_id, sid, 101, b't')}.tmp-deadbeef"
    stale_tmp.write_bytes(b"half")
    for key in [orphan_chunk, orphan_replay, gone_session, *referenced]:
        os.utime(root / key, (old, old))
    os.utime(stale_tmp, (old, old))

    preview = do_purge(s, dry_run=True)
    assert (preview.orphans, preview.temp_files) == (3, 1)
    report = do_purge(s)
    assert (report.orphans, report.temp_files) == (3, 1)
    left = files(s, "chunks") | files(s, "replays")
    assert fresh_orphan in left  # younger than the grace period: may be an in-flight ingest
    assert not {orphan_chunk, orphan_replay, gone_session} & left
    assert not stale_tmp.exists()
    assert referenced <= left  # old but referenced blobs stay
    assert do_purge(s, orphan_grace_s=0).orphans == 1  # the young one, once grace is waived
    assert_consistent(s)


# --- library: crash safety -------------------------------------------------------------------


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs (not even except Exception handlers)."""


@pytest.mark.backends
def test_interrupted_purge_leaves_no_dangling_rows_and_resumes(
    tmp_path: Path, backend_settings: Make
) -> None:
    shop = make_shop(
        tmp_path / "data", n=6, settings=backend_settings(tmp_path / "data", demo=False)
    )
    s = shop.settings
    age_sessions(s.database, shop.sessions, 10 * DAY_MS)
    conn = connect(s.database)
    ctx = job_ctx(dataclasses.replace(s, job_batch_size=4), conn)
    deleted: list[str] = []
    real_delete = ctx.blobs.delete

    def delete_then_die(keys: Any) -> int:
        keys = list(keys)
        if len(deleted) >= 2:
            raise Crash
        deleted.extend(keys)
        return real_delete(keys)

    ctx.blobs.delete = delete_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        retention.purge(ctx)
    conn.close()
    chunks, replays = live_keys(s)
    assert chunks <= files(s, "chunks") and replays <= files(s, "replays")  # nothing dangles
    queued = {r[0] for r in q(s, "SELECT key FROM purge_queue")}
    assert queued and not queued & (chunks | replays)  # detached rows, blobs still queued
    report = do_purge(s)
    assert report.resumed == len(queued)
    assert_consistent(s)
    assert q(s, "SELECT count(*) FROM chunks WHERE blob_key IS NOT NULL") == [(0,)]


# --- library: segments (many chunks in one blob) ------------------------------------------------


def store_segment(settings: Settings, site: Site, sessions: list[str]) -> str:
    """One batch per session written as one writer group: one segment; returns its key."""
    batches = []
    for sid in sessions:
        env = decode_envelope(json.dumps(cart_batch(sid, pad=500)).encode())
        raw = event_bytes(env)
        assert raw is not None
        batches.append(prepare(site, env, compress_events(raw), now_ms()))
    conn = connect(settings.database)
    try:
        results = store_batches(conn, BlobStore(settings.effective_blob_url), batches)
    finally:
        conn.close()
    assert results == [True] * len(batches)
    marks = ",".join("?" * len(sessions))
    sql = f"SELECT DISTINCT blob_key FROM chunks WHERE session_id IN ({marks})"
    ((key,),) = q(settings, sql, tuple(sessions))
    return str(key)


def rows_on(settings: Settings, key: str) -> int:
    return int(q(settings, "SELECT count(*) FROM chunks WHERE blob_key = ?", (key,))[0][0])


def segment_settings(tmp_path: Path) -> tuple[Settings, Site]:
    settings = make_settings(tmp_path / "data", demo=False)
    site, _ = add_site(settings)
    return settings, site


def test_a_segment_goes_only_with_its_last_row_across_purge_batches(tmp_path: Path) -> None:
    settings, site = segment_settings(tmp_path)
    first = [str(uuid.uuid4()) for _ in range(5)]
    second = [str(uuid.uuid4()) for _ in range(3)]
    seg_a = store_segment(settings, site, first)
    seg_b = store_segment(settings, site, second)
    assert files(settings, "chunks") == {seg_a, seg_b}
    sizes = {k: (blob_root(settings) / k).stat().st_size for k in (seg_a, seg_b)}
    age_sessions(settings.database, first + second, 10 * DAY_MS)

    conn = connect(settings.database)
    ctx = job_ctx(dataclasses.replace(settings, job_batch_size=2), conn)
    deleted: list[str] = []
    checks: list[tuple[int, int]] = []
    real_delete, real_write = ctx.blobs.delete, ctx.write

    def delete(keys: Any) -> int:
        keys = list(keys)
        for key in keys:
            assert rows_on(settings, key) == 0, f"{key} deleted while a row points at it"
        deleted.extend(keys)
        return real_delete(keys)

    def write(fn: Any) -> Any:
        result = real_write(fn)
        # After every transaction: a segment any row points at is on disk and not queued.
        queued = {r[0] for r in q(settings, "SELECT key FROM purge_queue")}
        for key in (seg_a, seg_b):
            if rows_on(settings, key):
                assert (blob_root(settings) / key).is_file() and key not in queued
        checks.append((rows_on(settings, seg_a), rows_on(settings, seg_b)))
        return result

    ctx.blobs.delete = delete  # type: ignore[method-assign]
    ctx.write = write  # type: ignore[misc]
    preview = do_purge(settings, dry_run=True)
    try:
        report = retention.purge(ctx)
    finally:
        conn.close()
    assert any(0 < a < 5 for a, _ in checks)  # the first segment was split across batches
    assert report.chunks == 8 and sorted(deleted) == sorted([seg_a, seg_b])
    assert report.blob_bytes == sum(sizes.values()) == preview.blob_bytes
    assert preview.chunks == 8
    assert_consistent(settings)


def test_a_segment_stays_while_rows_not_yet_due_point_at_it(tmp_path: Path) -> None:
    settings, site = segment_settings(tmp_path)
    sessions = [str(uuid.uuid4()) for _ in range(4)]
    seg = store_segment(settings, site, sessions)
    size = (blob_root(settings) / seg).stat().st_size
    age_sessions(settings.database, sessions[:2], 10 * DAY_MS)

    preview = do_purge(settings, dry_run=True)
    assert preview.chunks == 2 and preview.blob_bytes == 0  # nothing freed yet
    report = do_purge(settings)
    assert report.chunks == 2 and report.blob_bytes == 0
    assert rows_on(settings, seg) == 2 and files(settings, "chunks") == {seg}
    blobs = BlobStore(settings.effective_blob_url)
    for sid in sessions[2:]:  # the rows left still read their events
        ((key, offset, length),) = q(
            settings,
            "SELECT blob_key, blob_offset, blob_length FROM chunks WHERE session_id = ?",
            (sid,),
        )
        assert json.loads(read_chunk(blobs, key, offset, length))[0]["type"] == 4
    assert_consistent(settings)

    age_sessions(settings.database, sessions[2:], 10 * DAY_MS)
    report = do_purge(settings)
    assert report.chunks == 2 and report.blob_bytes == size
    assert files(settings, "chunks") == set()
    assert_consistent(settings)


def test_a_purge_killed_midway_through_a_segment_is_finished_next_run(tmp_path: Path) -> None:
    settings, site = segment_settings(tmp_path)
    sessions = [str(uuid.uuid4()) for _ in range(5)]
    seg = store_segment(settings, site, sessions)
    age_sessions(settings.database, sessions, 10 * DAY_MS)

    conn = connect(settings.database)
    ctx = job_ctx(dataclasses.replace(settings, job_batch_size=2), conn)
    real_write = ctx.write

    def write_then_die(fn: Any) -> Any:
        real_write(fn)
        raise Crash  # killed right after the first detach committed

    ctx.write = write_then_die  # type: ignore[misc]
    with pytest.raises(Crash):
        retention.purge(ctx)
    conn.close()
    assert rows_on(settings, seg) == 3 and (blob_root(settings) / seg).is_file()
    assert q(settings, "SELECT count(*) FROM purge_queue") == [(0,)]

    # Killed again, after the last row's detach queued the segment, before its delete.
    conn = connect(settings.database)
    ctx = job_ctx(settings, conn)

    def die(keys: Any) -> int:
        raise Crash

    ctx.blobs.delete = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        retention.purge(ctx)
    conn.close()
    assert rows_on(settings, seg) == 0 and (blob_root(settings) / seg).is_file()
    assert q(settings, "SELECT key FROM purge_queue") == [(seg,)]

    report = do_purge(settings)
    assert report.resumed == 1 and files(settings, "chunks") == set()
    assert_consistent(settings)


def test_orphan_sweep_understands_segments(tmp_path: Path) -> None:
    settings, site = segment_settings(tmp_path)
    referenced = store_segment(settings, site, [str(uuid.uuid4()) for _ in range(3)])
    blobs = BlobStore(settings.effective_blob_url)
    root = blob_root(settings)
    frame = compress(b'[{"type": 3, "timestamp": 1}]')
    orphan = segment_key(site.id, now_ms())  # written, its rows never committed (a crash)
    fresh = segment_key(site.id, now_ms())  # maybe an ingest group still committing
    for key in (orphan, fresh):
        blobs.put_raw(key, frame * 3)
    stale_tmp = root / f"{segment_key(site.id, now_ms())}.tmp-0123abcd"
    stale_tmp.write_bytes(frame)
    old = time.time() - 7200
    for path in (root / referenced, root / orphan, stale_tmp):
        os.utime(path, (old, old))

    preview = do_purge(settings, dry_run=True)
    assert (preview.orphans, preview.temp_files) == (1, 1)
    report = do_purge(settings)
    assert (report.orphans, report.temp_files, report.chunks) == (1, 1, 0)
    assert files(settings, "chunks") == {referenced, fresh}
    assert do_purge(settings, orphan_grace_s=0).orphans == 1  # the young one, once grace is off
    assert files(settings, "chunks") == {referenced}
    assert_consistent(settings)


@pytest.mark.backends
def test_run_records_a_job_run_and_prunes_old_runs(tmp_path: Path, backend_settings: Make) -> None:
    shop = make_shop(
        tmp_path / "data", n=2, settings=backend_settings(tmp_path / "data", demo=False)
    )
    s = shop.settings
    age_sessions(s.database, shop.sessions, 8 * DAY_MS)
    conn = connect(s.database)
    with contextlib.closing(conn), transaction(conn):
        conn.executemany(
            "INSERT INTO job_runs (job, trigger, started_at, status) "
            "VALUES ('cluster', 'x', ?, 'ok')",
            [(i,) for i in range(600)],
        )
    conn = connect(s.database)
    try:
        result = run_job(job_ctx(s, conn, older_than_s=None), "purge")
    finally:
        conn.close()
    assert result.items == 6 and result.errors == 0
    assert result.details["removed"] == {
        "chunks": 2,
        "replays": 2,
        "payloads": 2,
        "sourcemaps": 0,
        "clips": 0,
        "orphans": 0,
        "temp_files": 0,
        "resumed": 0,
    }
    assert result.details["job_runs_pruned"] >= 100
    assert q(s, "SELECT count(*) FROM job_runs WHERE job = 'cluster'")[0][0] <= 500
    rows = q(s, "SELECT status, items FROM job_runs WHERE job = 'purge'")
    assert rows == [("ok", 6)]


@pytest.mark.backends
def test_a_failing_blob_delete_is_an_error_and_retried_next_run(
    tmp_path: Path, backend_settings: Make
) -> None:
    shop = make_shop(
        tmp_path / "data", n=1, settings=backend_settings(tmp_path / "data", demo=False)
    )
    s = shop.settings
    age_sessions(s.database, shop.sessions, 8 * DAY_MS)
    conn = connect(s.database)
    ctx = job_ctx(s, conn)

    def refuse(keys: Any) -> int:
        raise PermissionError("read-only file system")

    ctx.blobs.delete = refuse  # type: ignore[method-assign]
    report = retention.purge(ctx)
    conn.close()
    assert report.errors == 2 and "read-only" in report.error_messages[0]
    assert q(s, "SELECT count(*) FROM purge_queue") == [(2,)]
    assert do_purge(s).resumed == 2
    assert_consistent(s)


def test_disk_status_reports_the_floor(tmp_path: Path) -> None:
    low = retention.disk_status(make_settings(tmp_path / "d", min_free_disk_mb=10**9))
    assert low.low and low.free_bytes > 0
    ok = retention.disk_status(make_settings(tmp_path / "d", min_free_disk_mb=0))
    assert not ok.low


# --- through a real server -----------------------------------------------------------------


def retrospec(server: ServerProcess, *args: str, **env: str) -> subprocess.Popen[str]:
    full_env = {**server.env, **{f"RETROSPEC_{k.upper()}": v for k, v in env.items()}}
    return subprocess.Popen(
        [sys.executable, "-m", "retrospec", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


class Traffic(threading.Thread):
    """A second client posting batches the whole time; records every acknowledged batch."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.base_url}/api/v1/ingest?key={key}"
        self.stop = threading.Event()
        self.acked: list[tuple[str, int]] = []
        self.refused: list[int] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                sid = str(uuid.uuid4())
                for seq in range(3):
                    r = client.post(self.url, content=json.dumps(cart_batch(sid, seq, pad=2000)))
                    if r.status_code == 202:
                        self.acked.append((sid, seq))
                    else:
                        self.refused.append(r.status_code)


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def populate_server(server: ServerProcess, n: int = 20) -> tuple[Shop, str]:
    s = server.settings
    _, key = add_site(s, "shop")
    sessions = [str(uuid.uuid4()) for _ in range(n)]
    with httpx.Client(timeout=30) as client:
        for i, sid in enumerate(sessions):
            for seq in range(2):
                body = cart_batch(sid, seq, user=f"user{i % 7}", pad=1000)
                r = client.post(f"{server.base_url}/api/v1/ingest?key={key}", json=body)
                assert r.status_code == 202, r.text
    # The server's own scheduler clusters and builds replays.
    wait_for(
        lambda: (
            q(s, "SELECT count(*) FROM sessions WHERE replay_status = 'ready'")[0][0] == n
            and q(s, "SELECT count(*) FROM failures WHERE cluster_id IS NULL")[0][0] == 0
        )
    )
    return Shop(s, key, sessions), key


@pytest.mark.slow
def test_cli_purge_while_serving_under_ingest_traffic(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(
        demo="false",
        replay_interval_seconds="0.5",
        rate_limit_per_second="0",
        client_rate_limit_per_second="0",
        session_rate_limit_per_second="0",
    )
    shop, key = populate_server(server)
    s = server.settings
    ages = spread_over_days(shop)
    expired = {sid for sid, age in ages.items() if age > 7 * DAY_MS}
    assert len(expired) == 6
    issues_before = issue_snapshot(s)
    assert issues_before and issues_before[0][4] == 20  # one issue, 20 sessions
    # Chunk blobs (segments) every row of which belongs to an expired session.
    owners: dict[str, set[str]] = {}
    for sid, blob_key in q(s, "SELECT session_id, blob_key FROM chunks"):
        owners.setdefault(blob_key, set()).add(sid)
    expected_chunks = {k for k, sids in owners.items() if sids <= expired}
    assert len(expected_chunks) >= 6

    traffic = Traffic(server, key)
    traffic.start()
    wait_for(lambda: len(traffic.acked) >= 10)
    code, out, err = finish(retrospec(server, "purge", "--json"))
    wait_for(lambda: len(traffic.acked) >= 40)  # keep ingesting after the purge as well
    traffic.stop.set()
    traffic.join(timeout=30)
    assert code == 0, err
    assert "database is locked" not in err + server.log()
    doc = json.loads(out)
    assert doc["status"] == "ok" and doc["errors"] == 0
    assert doc["removed"]["chunks"] == 12 and doc["removed"]["replays"] == 6
    assert doc["removed"]["payloads"] == 12
    assert doc["bytes_freed"] > 0 and doc["disk"]["low"] is False
    assert not traffic.refused, traffic.refused

    # Exactly the expired artifacts went: SQLite and the blob directory agree.
    purged = {r[0] for r in q(s, "SELECT session_id FROM chunks WHERE blob_key IS NULL")}
    assert purged == expired
    assert not expected_chunks & files(s, "chunks")
    assert {r[0] for r in q(s, "SELECT id FROM sessions WHERE replay_status = 'expired'")} == (
        expired
    )
    replay_sessions = {f.split("/")[2] for f in files(s, "replays")}
    assert not replay_sessions & expired
    # Every acknowledged batch is committed with its blob.
    for sid, seq in traffic.acked:
        row = q(s, "SELECT blob_key FROM chunks WHERE session_id = ? AND seq = ?", (sid, seq))
        assert row and row[0][0] and (blob_root(s) / row[0][0]).is_file(), (sid, seq)
    # Issues keep their counts (the new traffic only adds to them).
    after = {r[0]: r for r in issue_snapshot(s)}
    for before in issues_before:
        now_row = after[before[0]]
        assert now_row[2] == before[2] and now_row[3] >= before[3] and now_row[4] >= before[4]

    code, out, err = finish(retrospec(server, "purge", "--json"))
    assert code == 0, err
    assert json.loads(out)["artifacts"] == 0  # idempotent: the second run removes nothing
    wait_for(
        lambda: (
            not q(
                s,
                "SELECT 1 FROM sessions WHERE chunks > replay_chunks "
                "AND replay_status != 'expired'",
            )
        )
    )
    time.sleep(0.5)  # let the replay job delete superseded versions
    assert live_keys(s)[0] == files(s, "chunks")


@pytest.mark.slow
def test_purge_killed_midway_resumes_without_dangling_rows_or_orphans(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(
        demo="false",
        replay_interval_seconds="0.5",
        rate_limit_per_second="0",
        client_rate_limit_per_second="0",
        session_rate_limit_per_second="0",
    )
    shop, _ = populate_server(server, n=12)
    s = server.settings
    age_sessions(s.database, shop.sessions, 10 * DAY_MS)

    proc = retrospec(server, "purge", "--pause-between-batches", "0.3", job_batch_size="3")
    wait_for(lambda: q(s, "SELECT count(*) FROM chunks WHERE blob_key IS NULL")[0][0] >= 6)
    wait_for(lambda: q(s, "SELECT count(*) FROM purge_queue")[0][0] > 0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reap it and close its pipes
    assert proc.returncode == -signal.SIGKILL

    chunks, replays = live_keys(s)
    assert chunks <= files(s, "chunks") and replays <= files(s, "replays")  # no dangling rows
    left_over = q(s, "SELECT count(*) FROM purge_queue")[0][0]
    assert left_over > 0
    assert q(s, "SELECT count(*) FROM chunks WHERE blob_key IS NOT NULL")[0][0] > 0  # midway

    code, out, err = finish(retrospec(server, "purge", "--json"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["removed"]["resumed"] >= 1
    assert_consistent(s)  # no dangling rows, no orphans, empty queue
    assert q(s, "SELECT count(*) FROM chunks WHERE blob_key IS NOT NULL") == [(0,)]
    assert q(s, "SELECT count(*) FROM sessions WHERE replay_status != 'expired'") == [(0,)]
    assert json.loads(finish(retrospec(server, "purge", "--json"))[1])["artifacts"] == 0


@pytest.mark.slow
def test_low_disk_is_reported_by_healthz_ingest_and_purge(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(demo="false", min_free_disk_mb=str(10**9), health_token="hc")  # no disk meets
    _, key = add_site(server.settings, "shop")
    url = f"{server.base_url}/api/v1/ingest?key={key}"
    sid = str(uuid.uuid4())
    refused = httpx.post(url, json=cart_batch(sid, 0))
    assert refused.status_code == 507 and "low on disk" in refused.json()["error"]
    taken = httpx.post(url, json=cart_batch(sid, 1, events=False))
    assert taken.status_code == 202  # failures still come in
    health = httpx.get(f"{server.base_url}/healthz", headers={"authorization": "Bearer hc"})
    assert health.json()["disk"]["low"] is True
    assert health.json()["disk"]["replay_ingest"] == "refused"

    code, out, err = finish(retrospec(server, "purge"))
    assert code == 0
    assert "warning:" in err and "below min_free_disk_mb" in err and "507" in err
    code, out, _ = finish(retrospec(server, "purge", "--json"))
    assert code == 0 and json.loads(out)["disk"]["low"] is True
    code, out, err = finish(retrospec(server, "purge", "--json", min_free_disk_mb="0"))
    assert json.loads(out)["disk"]["low"] is False and "warning" not in err


def test_job_failure_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path / "data", demo=False)
    add_site(settings)

    def boom(ctx: JobContext, **kwargs: Any) -> retention.PurgeReport:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(retention, "purge", boom)
    conn = connect(settings.database)
    try:
        with pytest.raises(JobFailed, match="disk on fire"):
            run_job(job_ctx(settings, conn), "purge")
    finally:
        conn.close()
    assert q(settings, "SELECT status, message FROM job_runs") == [
        ("error", "RuntimeError: disk on fire")
    ]
