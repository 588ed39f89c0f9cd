"""Which jobs exist, how one run is recorded, and APScheduler ticking them inside the server.

The registry imports the job functions directly; they know nothing about it (they only take a
JobContext), so there is no import loop and no name resolved from a string.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from retrospec import retention
from retrospec.alerts import deliver
from retrospec.clock import now_ms
from retrospec.issues import clustering
from retrospec.jobs.compute import ComputePool
from retrospec.jobs.context import JobContext, JobResult, Stopped
from retrospec.jobs.runs import finish_run, mark_interrupted_runs, start_run
from retrospec.replay import job as replay_job
from retrospec.settings import Settings
from retrospec.storage.db import exclusive, is_postgres_url
from retrospec.video import clips

log = logging.getLogger(__name__)

JobFn = Callable[[JobContext], JobResult]
JOBS: dict[str, JobFn] = {
    "replays": replay_job.run,
    "cluster": clustering.run,
    "purge": retention.run,
    "deliver": deliver.run,
    "clips": clips.run,
}


class JobFailed(Exception):
    """A job run ended with an exception (already recorded in job_runs)."""


def run_job(ctx: JobContext, name: str) -> JobResult:
    """Run one job now (blocking), recording start, end, items and errors in job_runs."""
    fn = JOBS[name]  # an unknown name fails before anything is recorded
    with exclusive(ctx.database, name) as mine:
        if not mine:
            return JobResult(message=f"{name} is running in another process")
        if is_postgres_url(ctx.database):
            # Holding the lock, a 'running' row of this job is a dead process's.
            ctx.write(lambda c: mark_interrupted_runs(c, name))
        return _run_locked(ctx, name, fn)


def _run_locked(ctx: JobContext, name: str, fn: JobFn) -> JobResult:
    started = now_ms()
    run_id: int = ctx.write(lambda c: start_run(c, name, ctx.trigger, started))
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
    ctx.write(lambda c: finish_run(c, run_id, status, result.items, result.errors, result.message))
    if status == "error":
        raise JobFailed(result.message)
    return result


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
            "deliver": settings.alert_interval_seconds,
            "clips": settings.clip_interval_seconds,
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
