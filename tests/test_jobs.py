"""The job runner: run records, interrupted runs, and the compute process the server uses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import uuid
from concurrent.futures.process import BrokenProcessPool

import pytest

from retrospec.ingest.prepare import decode_envelope, prepare, store_events
from retrospec.ingest.write import write_batch
from retrospec.issues import clustering
from retrospec.jobs.compute import COMPUTE_NICENESS, ComputePool
from retrospec.jobs.context import JobContext
from retrospec.jobs.runs import mark_interrupted_runs
from retrospec.replay import job as replay_job
from retrospec.scheduler import run_job
from retrospec.settings import Settings
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect
from tests.support.data import add_site

STACK = "TypeError: x\n    at checkout (https://shop.example/static/app.3f9a1c2b.js:10:20)"


def _feed(settings: Settings, site: Site, sessions: int) -> None:
    """Two batches per session: a full snapshot with a click, then the same error."""
    blobs = BlobStore(settings.effective_blob_url)
    conn = connect(settings.db_path)
    try:
        for n in range(sessions):
            sid = str(uuid.uuid4())
            events = [
                {"type": 4, "data": {"href": "https://shop.example/cart"}, "timestamp": 1000},
                {
                    "type": 2,
                    "timestamp": 1001,
                    "data": {"node": {"type": 0, "id": 1, "childNodes": []}},
                },
            ]
            failure = {
                "kind": "error",
                "ts": 1500,
                "type": "TypeError",
                "message": "Cannot read properties of undefined (reading 'total')",
                "stack": STACK,
            }
            for seq, extra in enumerate(({"events": events}, {"failures": [failure]})):
                body = {"session": {"id": sid, "anonymous_id": f"a{n}"}, "seq": seq, **extra}
                env = decode_envelope(json.dumps(body).encode())
                raw = env.events and bytes(env.events)
                chunk = store_events(blobs, site, env, raw) if raw else None
                batch = prepare(site, env, chunk, 1_700_000_000_000 + n)
                DirectWriter(conn).call(lambda c, b=batch: write_batch(c, b))
    finally:
        conn.close()


def _state(settings: Settings) -> tuple[object, ...]:
    with sqlite3.connect(settings.db_path) as conn:
        return (
            conn.execute(
                "SELECT status, failure_count, session_count, user_count FROM clusters"
            ).fetchall(),
            conn.execute("SELECT replay_status, count(*) FROM sessions GROUP BY 1").fetchall(),
            conn.execute("SELECT count(*) FROM failures WHERE cluster_id IS NULL").fetchone(),
        )


def test_jobs_in_the_compute_process_match_inline_runs(settings: Settings) -> None:
    site, _ = add_site(settings, "shop")
    _feed(settings, site, 3)
    pool = ComputePool(idle_s=0.0)
    conn = connect(settings.db_path)
    try:
        ctx = JobContext(
            settings=settings,
            blobs=BlobStore(settings.effective_blob_url),
            write=DirectWriter(conn).call,
            compute=pool.run,
        )
        assert replay_job.run(ctx).items == 3
        assert clustering.run(ctx).items == 3
    finally:
        conn.close()
    assert _state(settings) == (
        [("open", 3, 3, 3)],
        [("ready", 3)],
        (0,),
    )
    # The work ran in a child process, which stops once idle.
    assert pool._pool is not None
    child_pids = list(pool._pool._processes)
    assert child_pids and os.getpid() not in child_pids
    pool.reap()
    assert pool._pool is None
    pool.shutdown()


def test_a_dead_compute_process_is_replaced(settings: Settings) -> None:
    pool = ComputePool()
    try:
        assert pool.run(sum, [1, 2, 3]) == 6
        assert pool._pool is not None
        (pid,) = pool._pool._processes
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        with pytest.raises(BrokenProcessPool):
            pool.run(sum, [1])
        assert pool.run(sum, [4, 5]) == 9  # a fresh child
    finally:
        pool.shutdown()


def test_the_compute_process_runs_at_a_lower_priority_than_the_server() -> None:
    # Job work yields the CPU to ingest on a busy machine (the kernel schedules it last).
    pool = ComputePool()
    try:
        assert pool.run(os.nice, 0) == min(19, os.nice(0) + COMPUTE_NICENESS)
    finally:
        pool.shutdown()


def test_runs_are_recorded_and_a_crashed_run_is_marked_interrupted(settings: Settings) -> None:
    conn = connect(settings.db_path)
    try:
        writer = DirectWriter(conn)
        ctx = JobContext(settings=settings, blobs=BlobStore(settings.effective_blob_url),
                         write=writer.call)  # fmt: skip
        result = run_job(ctx, "cluster")
        assert result.items == 0
        # A run left 'running' by a killed process is closed at the next server start.
        writer.call(
            lambda c: c.execute(
                "INSERT INTO job_runs (job, trigger, started_at) VALUES ('replays', 'scheduler', 1)"
            )
        )
        assert writer.call(mark_interrupted_runs) == 1
        rows = conn.execute("SELECT job, status, finished_at IS NOT NULL FROM job_runs").fetchall()
    finally:
        conn.close()
    assert [tuple(r) for r in rows] == [("cluster", "ok", 1), ("replays", "interrupted", 1)]
