"""Background jobs: one runner for the scheduler and `retrospec jobs run`, with a record per run."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from retrospec.clock import now_ms
from retrospec.settings import Settings
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import connect

T = TypeVar("T")
log = logging.getLogger("retrospec.jobs.context")

# name -> "module:function"; each function takes a JobContext and returns a JobResult.
JOBS: dict[str, str] = {
    "replays": "retrospec.replay.queries:run",
    "cluster": "retrospec.issues.clustering:run",
    "purge": "retrospec.retention:run",
}


def run_inline(fn: Callable[..., T], *args: Any) -> T:
    """Compute in this thread (the CLI and tests: nothing else competes for the interpreter)."""
    return fn(*args)


class ComputePool:
    """CPU-heavy job work (fingerprinting, replay builds) in one child process.

    In the server, job threads share the GIL with the event loop; a second process gives that
    work its own interpreter, so ingest keeps its latency while jobs run. The process starts on
    first use (forkserver: a clean child, not a fork of a threaded server) and stops after
    `idle_s` without work, so an idle server carries no extra memory.
    """

    def __init__(self, idle_s: float = 60.0) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._last_used = 0.0

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) in the child and wait (fn and its arguments must pickle)."""
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            self._busy += 1
            pool = self._pool
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            # The child died (killed, out of memory): start a fresh one on the next call.
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise
        finally:
            with self._lock:
                self._busy -= 1
                self._last_used = time.monotonic()

    def reap(self) -> None:
        """Stop the child when it has been idle for idle_s."""
        with self._lock:
            idle = time.monotonic() - self._last_used > self.idle_s
            if self._pool is None or self._busy or not idle:
                return
            pool, self._pool = self._pool, None
        pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the child now."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Stopped(Exception):
    """Raised inside a job when the server is shutting down; the run ends cleanly."""


@dataclass(slots=True)
class JobResult:
    """What one run did."""

    items: int = 0
    errors: int = 0
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class JobContext:
    """What a job may use: settings, blobs, a way to write, fresh read connections."""

    settings: Settings
    blobs: BlobStore
    write: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    trigger: str = "cli"
    stop: threading.Event = field(default_factory=threading.Event)
    options: dict[str, Any] = field(default_factory=dict)
    # Where CPU-heavy pure work runs: inline here, a child process in the server.
    compute: Callable[..., Any] = run_inline

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        return self.settings.db_path

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection (the caller closes it)."""
        return connect(self.db_path, readonly=True)

    def check_stop(self) -> None:
        """Call between batches: ends the run early when the server is stopping."""
        if self.stop.is_set():
            raise Stopped


def job_function(name: str) -> Callable[[JobContext], JobResult]:
    """Resolve a job name to its function."""
    if name not in JOBS:
        raise KeyError(name)
    module_name, attr = JOBS[name].split(":")
    fn: Callable[[JobContext], JobResult] = getattr(importlib.import_module(module_name), attr)
    return fn


def run_job(ctx: JobContext, name: str) -> JobResult:
    """Run one job now (blocking), recording start, end, items and errors in job_runs."""
    fn = job_function(name)  # an unknown name fails before anything is recorded
    started = now_ms()
    run_id: int = ctx.write(
        lambda c: (
            c.execute(
                "INSERT INTO job_runs (job, trigger, started_at) VALUES (?, ?, ?)",
                (name, ctx.trigger, started),
            ).lastrowid
        )
    )
    status, result = "ok", JobResult()
    try:
        result = fn(ctx)
        if result.errors:
            status = "partial"
    except Stopped:
        status, result.message = "stopped", "stopped at shutdown"
    except Exception as exc:
        log.exception("job %s failed", name)
        status, result.message = "error", f"{type(exc).__name__}: {exc}"
        result.errors += 1
    ctx.write(
        lambda c: c.execute(
            "UPDATE job_runs SET finished_at = ?, status = ?, items = ?, errors = ?, "
            "message = ? WHERE id = ?",
            (now_ms(), status, result.items, result.errors, result.message[:2000], run_id),
        )
    )
    if status == "error":
        raise JobFailed(result.message)
    return result


class JobFailed(Exception):
    """A job run ended with an exception (already recorded in job_runs)."""


def mark_interrupted_runs(conn: sqlite3.Connection) -> int:
    """At server start: runs still 'running' were cut off by a crash or SIGKILL; say so."""
    cur = conn.execute(
        "UPDATE job_runs SET status = 'interrupted', finished_at = coalesce(finished_at, ?), "
        "message = coalesce(message, 'the process stopped before the run finished') "
        "WHERE status = 'running'",
        (now_ms(),),
    )
    return cur.rowcount


def prune_job_runs(conn: sqlite3.Connection, keep_per_job: int = 500) -> int:
    """Keep the newest runs of each job so a 1-second job does not grow the table forever."""
    cur = conn.execute(
        "DELETE FROM job_runs WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
        "(PARTITION BY job ORDER BY id DESC) AS n FROM job_runs) WHERE n > ?)",
        (keep_per_job,),
    )
    return cur.rowcount


class Scheduler:
    """APScheduler in the server's event loop; job bodies run in threads, one at a time each."""

    def __init__(self, make_ctx: Callable[[str], JobContext], settings: Settings) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._make_ctx = make_ctx
        self._settings = settings
        self._stop = threading.Event()
        self.compute = ComputePool()
        self._running: set[asyncio.Future[Any]] = set()
        self._sched = AsyncIOScheduler(timezone="UTC")
        intervals = {
            "cluster": settings.cluster_interval_seconds,
            "replays": settings.replay_interval_seconds,
            "purge": settings.purge_interval_hours * 3600,
        }
        now = datetime.now(UTC)
        for name, seconds in intervals.items():
            # The daily purge also runs a few minutes after start: a server restarted more often
            # than purge_interval_hours would otherwise never purge.
            first = now + timedelta(seconds=min(seconds, 300.0))
            self._sched.add_job(
                self._tick,
                "interval",
                seconds=seconds,
                args=[name],
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=first,
            )

    def start(self) -> None:
        """Start ticking (call inside the running event loop)."""
        self._sched.start()

    async def _tick(self, name: str) -> None:
        ctx = self._make_ctx(name)
        ctx.stop = self._stop
        ctx.trigger = "scheduler"
        ctx.compute = self.compute.run
        future = asyncio.get_running_loop().run_in_executor(None, _quiet_run, ctx, name)
        self._running.add(future)
        try:
            await future
        finally:
            self._running.discard(future)
            self.compute.reap()

    async def shutdown(self) -> None:
        """Stop scheduling, ask running jobs to stop at their next batch, and wait for them."""
        self._stop.set()
        self._sched.shutdown(wait=False)
        if self._running:
            await asyncio.wait(list(self._running), timeout=30)
        await asyncio.get_running_loop().run_in_executor(None, self.compute.shutdown)


def _quiet_run(ctx: JobContext, name: str) -> None:
    # A failure is recorded in job_runs and logged; the next tick tries again.
    with contextlib.suppress(JobFailed):
        run_job(ctx, name)
