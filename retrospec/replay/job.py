"""The replay job: finds sessions with new chunks, builds them off the writer, one write each.

Cost: an in-progress session is rebuilt from all its chunks each time new ones arrive, which is
linear in its size per build (quadratic over its life if rebuilt every tick). So a session over
THROTTLE_FROM_BYTES waits size / THROTTLE_BYTES_PER_MS after its last build (20 s per MB, at most
THROTTLE_MAX_MS): rebuilding one recording session then costs at most ~50 KB of raw events per
second, about 400 sessions recording at once per core at ~20 MB/s, and a replay viewed live lags
by that wait (5 s at 256 KB, 1 min at 3 MB, 5 min from 15 MB up).

Safety: the write fn re-reads the row and stores a build only if it is newer than the one stored
(replay_chunks < our chunk count), so overlapping runs (CLI beside the scheduler) keep the newest;
a chunk arriving during a build leaves chunks > replay_chunks, so the session stays dirty. Old
artifact versions are deleted after the commit; a crash in between leaves one that the session's
next build (or the purge job's orphan sweep) removes.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import msgspec

from retrospec.clock import now_ms
from retrospec.ingest.guards import DiskGuard
from retrospec.jobs.context import JobContext, JobResult
from retrospec.replay.build import (
    MAX_SESSION_RAW_BYTES,
    Built,
    ChunkRef,
    Work,
    build_from_url,
)
from retrospec.replay.markers import FailureRow
from retrospec.storage.blobs import BlobStore, replay_key

log = logging.getLogger(__name__)

# Work bound for one run (besides settings.job_batch_size sessions); one session always runs.
MAX_RUN_RAW_BYTES = 128 * 1024 * 1024
THROTTLE_FROM_BYTES = 256 * 1024  # below this the wait would be under the job interval anyway
THROTTLE_BYTES_PER_MS = 50  # 20 s of waiting per MB
THROTTLE_MAX_MS = 300_000
MAX_FAILURE_MARKERS = 1_000
_VERSION_RE = re.compile(r"^v(\d+)\.zst$")

# Test hook: called with (stage, session id) at "built" (artifact written, row not yet updated)
# and "committed" (row updated, old versions not yet deleted).
Hook = Callable[[str, str], None]


# Round robin over sites: every site's oldest dirty session first, then every site's second,
# and so on, so one site's backlog cannot fill the batch while another site's replays wait.
_DIRTY_SQL = """
SELECT id, raw_bytes, site_id FROM (
    SELECT id, raw_bytes, site_id, last_seen_at,
           row_number() OVER (PARTITION BY site_id ORDER BY last_seen_at, id) AS turn
    FROM sessions
    WHERE chunks > replay_chunks AND replay_status != 'expired'
      AND (? = 1 OR replay_built_at IS NULL OR raw_bytes < ?
           OR replay_built_at + min(raw_bytes / ?, ?) <= ?)
) AS dirty
ORDER BY turn, last_seen_at, id
LIMIT ?
"""


_DIRTY_COUNT_SQL = (
    "SELECT count(*) FROM sessions WHERE chunks > replay_chunks AND replay_status != 'expired'"
)


def dirty_sessions(
    conn: sqlite3.Connection, limit: int, now: int, *, force: bool = False
) -> list[tuple[str, int, str]]:
    """(id, raw bytes, site id) of sessions with chunks not yet in their replay.

    Oldest activity first within a site, sites taking turns.
    """
    rows = conn.execute(
        _DIRTY_SQL,
        (
            1 if force else 0,
            THROTTLE_FROM_BYTES,
            THROTTLE_BYTES_PER_MS,
            THROTTLE_MAX_MS,
            now,
            limit,
        ),
    ).fetchall()
    return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]


def load_work(conn: sqlite3.Connection, session_id: str) -> Work | None:
    """Session row, chunk list and failures, read in one snapshot so they agree."""
    conn.execute("BEGIN")
    try:
        row = conn.execute(
            "SELECT id, site_id, chunks, replay_chunks, replay_status, entry_url "
            "FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        chunks = [
            ChunkRef(int(r[0]), str(r[1]), int(r[2]), r[3], r[4])
            for r in conn.execute(
                "SELECT seq, blob_key, raw_bytes, blob_offset, blob_length FROM chunks "
                "WHERE session_id = ? AND blob_key IS NOT NULL ORDER BY seq",
                (session_id,),
            )
        ]
        failures = [
            FailureRow(
                id=int(r[0]),
                kind=str(r[1]),
                type=r[2],
                message=r[3],
                ts=int(r[4]),
                method=r[5],
                request_url=r[6],
                status=r[7],
            )
            for r in conn.execute(
                "SELECT id, kind, type, message, ts, method, request_url, status FROM failures "
                "WHERE session_id = ? ORDER BY ts, id LIMIT ?",
                (session_id, MAX_FAILURE_MARKERS),
            )
        ]
    finally:
        conn.execute("COMMIT")
    return Work(
        id=str(row["id"]),
        site_id=str(row["site_id"]),
        version=int(row["chunks"]),
        built_chunks=int(row["replay_chunks"]),
        status=str(row["replay_status"]),
        entry_url=row["entry_url"],
        chunks=chunks,
        failures=failures,
    )


def _commit(work: Work, built: Built, now: int) -> Callable[[sqlite3.Connection], Any]:
    """The one short write fn of a session: summary columns and markers, if still newest."""

    def fn(conn: sqlite3.Connection) -> tuple[bool, str | None]:
        row = conn.execute(
            "SELECT replay_chunks, replay_status, replay_key FROM sessions WHERE id = ?",
            (work.id,),
        ).fetchone()
        # Another run already stored this or a newer build, or the purge got here first.
        if row is None or row[1] == "expired" or int(row[0]) >= work.version:
            return False, row[2] if row is not None else None
        if built.summary is None:  # error: keep the last good artifact and markers
            conn.execute(
                "UPDATE sessions SET replay_status = ?, replay_reason = ?, replay_chunks = ?, "
                "replay_built_at = ? WHERE id = ?",
                (built.status, built.reason, work.version, now, work.id),
            )
            return True, None
        s = built.summary
        start = s.start_ts or 0
        conn.execute(
            "UPDATE sessions SET replay_status = ?, replay_reason = ?, replay_chunks = ?, "
            "replay_key = ?, replay_bytes = ?, replay_events = ?, replay_start_ts = ?, "
            "replay_end_ts = ?, duration_ms = ?, active_ms = ?, pages = ?, clicks = ?, "
            "rage_clicks = ?, replay_segments = ?, replay_built_at = ? WHERE id = ?",
            (
                built.status,
                built.reason,
                work.version,
                built.key,
                built.stored_bytes,
                s.events,
                s.start_ts,
                s.end_ts,
                s.duration_ms,
                s.active_ms,
                msgspec.json.encode(s.pages).decode(),
                s.clicks,
                s.rage_clicks,
                built.segments,
                now,
                work.id,
            ),
        )
        conn.execute("DELETE FROM replay_markers WHERE session_id = ?", (work.id,))
        conn.executemany(
            "INSERT INTO replay_markers (session_id, ts, offset_ms, kind, label, failure_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (work.id, m.ts, max(0, m.ts - start), m.kind, m.label, m.failure_id)
                for m in s.markers
            ],
        )
        old = row[2]
        return True, old if old != built.key else None

    return fn


def sweep_versions(blobs: BlobStore, site_id: str, session_id: str, keep: int) -> int:
    """Delete artifact versions older than keep (left by a crash between commit and delete)."""
    prefix = replay_key(site_id, session_id, keep).rsplit("/", 1)[0]
    stale = []
    for key, _size, _mtime in blobs.walk(prefix):
        match = _VERSION_RE.match(key.rsplit("/", 1)[-1])
        if match and int(match.group(1)) < keep:
            stale.append(key)
    return blobs.delete(stale) if stale else 0


def process(ctx: JobContext, conn: sqlite3.Connection, session_id: str, hook: Hook | None) -> str:
    """Build one session; returns ready|no_snapshot|error|skipped."""
    work = load_work(conn, session_id)
    if work is None or work.status == "expired" or work.version <= work.built_chunks:
        return "skipped"
    default_max = min(MAX_SESSION_RAW_BYTES, ctx.settings.max_session_mb * 1024 * 1024)
    max_bytes = int(ctx.options.get("max_session_bytes", default_max))
    try:
        # Parsing and compressing events is the CPU-heavy part: in the server it runs in the
        # compute process, off the interpreter the event loop uses.
        built: Built = ctx.compute(build_from_url, ctx.blobs.url, work, max_bytes)
    except (OSError, BrokenProcessPool):
        raise  # the store or the compute process failed, not the data: retried next run
    except Exception as exc:
        # Data we could not make sense of must not stop the job or make it retry forever.
        log.exception("replay build of session %s failed", session_id)
        built = Built("error", f"could not build the replay: {type(exc).__name__}: {exc}"[:500])
    if hook is not None and built.key is not None:
        hook("built", work.id)  # test hook: the artifact exists, the row does not point at it
    applied, old_key = ctx.write(_commit(work, built, now_ms()))
    if not applied:
        # A newer build won; our artifact is not referenced (unless it is the very same key).
        if built.key is not None and built.key != old_key:
            ctx.blobs.delete([built.key])
        return "skipped"
    if hook is not None:
        hook("committed", work.id)
    try:
        if built.key is not None:
            sweep_versions(ctx.blobs, work.site_id, work.id, work.version)
        elif old_key is not None:
            ctx.blobs.delete([old_key])
    except OSError as exc:  # committed already; the next build or the orphan sweep retries
        log.warning("could not delete old replay versions of %s: %s", work.id, exc)
    return built.status


def pick_fairly(candidates: list[tuple[str, int, str]], budget: int) -> tuple[list[str], int]:
    """Sessions for one run: at most `budget` raw bytes, each site at most its share of it.

    A site's share is the budget split evenly between the sites waiting; a site's first session
    may pass its share (a session is never split) but not the run's budget. So a site sending
    huge or garbage sessions spends its own share, never another site's turn.
    """
    sites = {site for _sid, _raw, site in candidates}
    share = budget // max(1, len(sites))
    spent: dict[str, int] = {}
    picked: list[str] = []
    total = 0
    for session_id, raw, site in candidates:
        used = spent.get(site)
        if used is not None and used + raw > share:
            continue  # this site had its share; the others still get theirs
        if picked and total + raw > budget:
            continue
        spent[site] = (used or 0) + raw
        picked.append(session_id)
        total += raw
    return picked, total


def run(ctx: JobContext) -> JobResult:
    """Build or extend the replays of sessions with new chunks (bounded batch, idempotent)."""
    started = time.monotonic()
    hook: Hook | None = ctx.options.get("hook")
    force = bool(ctx.options.get("force"))
    budget = int(ctx.options.get("max_run_bytes", MAX_RUN_RAW_BYTES))
    counts = {"ready": 0, "no_snapshot": 0, "error": 0, "skipped": 0, "failed": 0}
    errors: list[str] = []
    settings = ctx.settings
    disk = DiskGuard(
        settings.data_path, settings.min_free_disk_mb, 0, reserve_mb=settings.disk_reserve_mb
    )
    if ctx.blobs.local and disk.critical():
        # New artifacts need room; the reserve is left for SQLite. Purge frees space.
        return JobResult(message="postponed: free disk is below disk_reserve_mb")
    conn = ctx.reader()
    try:
        candidates = dirty_sessions(conn, ctx.settings.job_batch_size, now_ms(), force=force)
        dirty = int(conn.execute(_DIRTY_COUNT_SQL).fetchone()[0])
        picked, total = pick_fairly(candidates, budget)
        for session_id in picked:
            ctx.check_stop()
            try:
                outcome = process(ctx, conn, session_id, hook)
            except OSError as exc:
                log.warning("replay build of session %s postponed: %s", session_id, exc)
                counts["failed"] += 1
                errors.append(f"{session_id}: {exc}")
                continue
            counts[outcome] += 1
            if outcome == "error":
                errors.append(session_id)
    finally:
        conn.close()
    built = counts["ready"] + counts["no_snapshot"] + counts["error"]
    seconds = time.monotonic() - started
    message = (
        f"{built} sessions: {counts['ready']} ready, {counts['no_snapshot']} without snapshot, "
        f"{counts['error']} errors; {max(0, dirty - len(picked))} with new chunks left for "
        "later runs (batch limit or rebuild wait)"
    )
    return JobResult(
        items=built,
        errors=counts["error"] + counts["failed"],
        message=message,
        details={
            **counts,
            "waiting": max(0, dirty - len(picked)),
            "raw_bytes": total,
            "seconds": round(seconds, 3),
            "errors": errors,
        },
    )
