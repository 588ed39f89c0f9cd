"""`retrospec jobs run|list` and `retrospec purge`: run the background jobs from a terminal or cron.

Every command here works while `retrospec serve` is running: writes are short BEGIN IMMEDIATE
transactions on their own connection (the server's writer waits for them and retries), and the
jobs are idempotent and re-check state inside each write, so overlapping runs are harmless.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from enum import StrEnum
from types import FrameType
from typing import Annotated, Any

import typer

from retrospec import console
from retrospec.cli.common import ago, fit_table, human_bytes, load, require_db
from retrospec.clock import iso, now_ms
from retrospec.errors import RetrospecError, UsageError
from retrospec.settings import Settings, parse_duration

jobs_app = typer.Typer(help="Background jobs: run one now, list recent runs.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]


class JobName(StrEnum):
    """Jobs `retrospec jobs run` can start (the same functions the scheduler runs)."""

    replays = "replays"
    cluster = "cluster"
    purge = "purge"
    deliver = "deliver"
    clips = "clips"


def register(app: typer.Typer) -> None:
    """Add `jobs` and `purge` to the root CLI."""
    app.add_typer(jobs_app, name="jobs")
    app.command("purge")(purge)


class JobError(RetrospecError):
    """A job run raised, recorded errors, or was interrupted (exit 1)."""


@contextlib.contextmanager
def _job_context(settings: Settings, **options: Any) -> Iterator[Any]:
    """A JobContext writing through its own short transactions; Ctrl-C/SIGTERM stop it cleanly."""
    from retrospec.jobs.context import JobContext
    from retrospec.storage.blobs import BlobStore
    from retrospec.storage.db import DirectWriter, connect

    require_db(settings)
    conn = connect(settings.database, synchronous=settings.sqlite_synchronous)
    ctx = JobContext(
        settings=settings,
        blobs=BlobStore(settings.effective_blob_url),
        write=DirectWriter(conn).call,
        trigger="cli",
        options=options,
    )
    previous: dict[signal.Signals, Any] = {}

    def stop(signum: int, _frame: FrameType | None) -> None:
        # First signal: finish the current batch and record the run as stopped. The handler
        # goes back to the default, so a second Ctrl-C interrupts at once (still safe: jobs
        # are idempotent and purge resumes from its queue).
        ctx.stop.set()
        signal.signal(signum, previous.get(signal.Signals(signum), signal.SIG_DFL))

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
    try:
        yield ctx
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        conn.close()


def _run(ctx: Any, name: str) -> tuple[str, Any]:
    """run_job with its outcome as (status, JobResult); a failed run raises JobError."""
    from retrospec.jobs.context import JobResult
    from retrospec.scheduler import JobFailed, run_job

    try:
        result: JobResult = run_job(ctx, name)
    except JobFailed as exc:
        raise JobError(
            f"job {name} failed: {exc}; it is recorded in `retrospec jobs list`, fix the cause "
            "and run it again"
        ) from None
    if ctx.stop.is_set():
        return "stopped", result
    return ("partial" if result.errors else "ok"), result


@jobs_app.command("run")
def jobs_run(
    name: Annotated[JobName, typer.Argument(help="replays, cluster, purge, deliver or clips.")],
    json_out: JsonOpt = False,
) -> None:
    """Run one job now, with the same code the scheduler runs (exit 1 if it had errors)."""
    settings = load().settings
    with _job_context(settings) as ctx:
        status, result = _run(ctx, name.value)
    if json_out:
        console.print_json(
            {
                "schema_version": 1,
                "job": name.value,
                "status": status,
                "items": result.items,
                "errors": result.errors,
                "message": result.message,
                "details": result.details,
            }
        )
    else:
        line = f"{name.value}: {status}, {result.items} items, {result.errors} errors"
        console.print_text(line + (f" — {result.message}" if result.message else ""))
    if status == "stopped":
        raise JobError(f"job {name.value} was interrupted; run it again to finish")
    if result.errors:
        raise JobError(
            f"job {name.value} finished with {result.errors} errors; "
            "see `retrospec jobs list` and the server log"
        )


@jobs_app.command("list")
def jobs_list(
    job: Annotated[JobName | None, typer.Option("--job", help="Only runs of this job.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Recent job runs, newest first (scheduler and CLI runs alike)."""
    from retrospec.jobs.runs import recent_runs
    from retrospec.storage.db import connect

    settings = load().settings
    require_db(settings)
    conn = connect(settings.database, readonly=True)
    try:
        rows = recent_runs(conn, None if job is None else job.value, limit)
    finally:
        conn.close()
    runs = [
        {
            "id": r["id"],
            "job": r["job"],
            "trigger": r["trigger"],
            "started_at": iso(r["started_at"]),
            "finished_at": iso(r["finished_at"]),
            "duration_s": None
            if r["finished_at"] is None
            else round((r["finished_at"] - r["started_at"]) / 1000, 3),
            "status": r["status"],
            "items": r["items"],
            "errors": r["errors"],
            "message": r["message"],
        }
        for r in rows
    ]
    if json_out:
        console.print_json({"schema_version": 1, "runs": runs})
        return
    now = now_ms()
    fit_table(
        [
            ("id", {"justify": "right"}),
            ("job", {}),
            ("trigger", {}),
            ("started", {}),
            ("took", {"justify": "right"}),
            ("status", {}),
            ("items", {"justify": "right"}),
            ("errors", {"justify": "right", "short": "err"}),
            ("message", {}),
        ],
        [
            (
                r["id"],
                r["job"],
                r["trigger"],
                ago(row["started_at"], now),
                "" if r["duration_s"] is None else f"{r['duration_s']:.1f}s",
                r["status"],
                r["items"],
                r["errors"],
                r["message"],
            )
            for r, row in zip(runs, rows, strict=True)
        ],
        flex="message",
        optional=("trigger",),
        empty="no job runs yet",
    )


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Purge everything older than this (7d, 36h, 90m; a bare number is days) "
            "instead of retention_days and the per-site retention.",
        ),
    ] = None,
    orphan_grace: Annotated[
        str,
        typer.Option(
            "--orphan-grace",
            metavar="DURATION",
            help="Only sweep unreferenced blobs older than this (protects in-flight ingests).",
        ),
    ] = "1h",
    json_out: JsonOpt = False,
    # Tests only: sleep after each row transaction so a kill can land between rows and blobs.
    pause: Annotated[float, typer.Option("--pause-between-batches", hidden=True)] = 0.0,
) -> None:
    """Delete chunks, replays and failure payloads past retention; issues and counts stay.

    Rows first, then blobs, then a sweep of unreferenced blobs; safe from cron while serving.
    """
    from retrospec import retention

    older_than_s = parse_duration(older_than) if older_than is not None else None
    grace_s = parse_duration(orphan_grace)
    if pause < 0:
        raise UsageError("--pause-between-batches must not be negative")
    settings = load().settings
    disk = retention.disk_status(settings) if settings.data_path.exists() else None
    if disk is not None and disk.low:
        console.warn(
            f"free disk {human_bytes(disk.free_bytes)} is below min_free_disk_mb "
            f"({human_bytes(disk.floor_bytes)}): the server refuses replay data (507) and only "
            "takes failures; purge with a shorter --older-than or free space"
        )
    options = {
        "older_than_s": older_than_s,
        "orphan_grace_s": grace_s,
        "pause_s": pause,
        "dry_run": dry_run,
    }
    with _job_context(settings, **options) as ctx:
        if dry_run:
            report = retention.purge(
                ctx, older_than_s=older_than_s, dry_run=True, orphan_grace_s=grace_s
            )
            status, details, errors = "ok", report.as_dict(), report.errors
        else:
            status, result = _run(ctx, "purge")
            details, errors = result.details, result.errors
    if json_out:
        doc = {"schema_version": 1, "status": status, **details}
        doc["disk"] = (
            None
            if disk is None
            else {"free_bytes": disk.free_bytes, "floor_bytes": disk.floor_bytes, "low": disk.low}
        )
        console.print_json(doc)
    else:
        _print_purge(details, settings)
    if status == "stopped":
        raise JobError("purge was interrupted; run it again to finish (it resumes where it was)")
    if errors:
        raise JobError(
            f"purge finished with {errors} errors: {'; '.join(details['error_messages'][:3])}"
        )


def _print_purge(d: dict[str, Any], settings: Settings) -> None:
    removed = d.get("removed", {})
    verb = "would remove" if d.get("dry_run") else "removed"
    orphans = removed.get("orphans", 0) + removed.get("temp_files", 0)
    line = (
        f"{verb} {removed.get('chunks', 0)} chunks, {removed.get('replays', 0)} replays, "
        f"{removed.get('payloads', 0)} failure payloads, {orphans} orphan files"
    )
    if removed.get("resumed"):
        pending = "pending from" if d.get("dry_run") else "left by"
        line += f" (+{removed['resumed']} blobs {pending} an interrupted run)"
    console.print_text(line)
    console.print_text(
        f"{'would free' if d.get('dry_run') else 'freed'} {human_bytes(d.get('bytes_freed', 0))} "
        f"({human_bytes(d.get('blob_bytes_freed', 0))} of blobs, "
        f"{human_bytes(d.get('payload_bytes_freed', 0))} of failure payloads in SQLite) "
        f"in {d.get('elapsed_s', 0):.1f}s"
    )
    if d.get("older_than_s") is not None:
        rule = f"older than {d['older_than_s']:g}s (before {d.get('cutoff')})"
    else:
        rule = f"retention {settings.retention_days:g} days (before {d.get('cutoff')})"
        if d.get("site_cutoffs"):
            rule += f"; {len(d['site_cutoffs'])} sites with their own retention"
    console.print_text(rule)
