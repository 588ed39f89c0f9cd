"""The job_runs table: one row per run of a job, written at its start and end."""

from __future__ import annotations

import sqlite3

from retrospec.clock import now_ms

MESSAGE_CHARS = 2000


def start_run(conn: sqlite3.Connection, job: str, trigger: str, started_at: int) -> int:
    """Record a run as running; returns its id."""
    cur = conn.execute(
        "INSERT INTO job_runs (job, trigger, started_at) VALUES (?, ?, ?)",
        (job, trigger, started_at),
    )
    return int(cur.lastrowid or 0)


def finish_run(
    conn: sqlite3.Connection, run_id: int, status: str, items: int, errors: int, message: str
) -> None:
    """Record how a run ended."""
    conn.execute(
        "UPDATE job_runs SET finished_at = ?, status = ?, items = ?, errors = ?, "
        "message = ? WHERE id = ?",
        (now_ms(), status, items, errors, message[:MESSAGE_CHARS], run_id),
    )


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
