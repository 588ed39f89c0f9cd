"""The job_runs table: one row per run of a job, written at its start and end."""

from __future__ import annotations

import sqlite3
from typing import Any

from retrospec.clock import now_ms

MESSAGE_CHARS = 2000


def start_run(conn: sqlite3.Connection, job: str, trigger: str, started_at: int) -> int:
    """Record a run as running; returns its id."""
    (run_id,) = conn.execute(
        "INSERT INTO job_runs (job, trigger, started_at) VALUES (?, ?, ?) RETURNING id",
        (job, trigger, started_at),
    ).fetchone()
    return int(run_id)


def finish_run(
    conn: sqlite3.Connection, run_id: int, status: str, items: int, errors: int, message: str
) -> None:
    """Record how a run ended."""
    conn.execute(
        "UPDATE job_runs SET finished_at = ?, status = ?, items = ?, errors = ?, "
        "message = ? WHERE id = ?",
        (now_ms(), status, items, errors, message[:MESSAGE_CHARS], run_id),
    )


def mark_interrupted_runs(conn: sqlite3.Connection, job: str | None = None) -> int:
    """Runs still 'running' were cut off by a crash or SIGKILL; say so.

    At server start on SQLite (every job); on PostgreSQL by whoever next holds the job's lock
    (only that job: other processes may be running the others).
    """
    cur = conn.execute(
        "UPDATE job_runs SET status = 'interrupted', finished_at = coalesce(finished_at, ?), "
        "message = coalesce(message, 'the process stopped before the run finished') "
        "WHERE status = 'running' AND (job = ? OR ? = '')",
        (now_ms(), job or "", job or ""),
    )
    return cur.rowcount


def prune_job_runs(conn: sqlite3.Connection, keep_per_job: int = 500) -> int:
    """Keep the newest runs of each job so a 1-second job does not grow the table forever."""
    cur = conn.execute(
        "DELETE FROM job_runs WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
        "(PARTITION BY job ORDER BY id DESC) AS n FROM job_runs) AS ranked WHERE n > ?)",
        (keep_per_job,),
    )
    return cur.rowcount


def recent_runs(conn: sqlite3.Connection, job: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest runs (of one job, or of all), newest first, as dicts of their columns."""
    cols = "id, job, trigger, started_at, finished_at, status, items, errors, message"
    if job is None:
        rows = conn.execute(
            f"SELECT {cols} FROM job_runs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {cols} FROM job_runs WHERE job = ? ORDER BY id DESC LIMIT ?", (job, limit)
        ).fetchall()
    return [dict(zip(cols.split(", "), row, strict=True)) for row in rows]
