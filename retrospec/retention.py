"""Retention: purge heavy artifacts past their age — rows first, then blobs, then an orphan sweep.

What goes: raw chunk blobs, replay artifacts (and the issue clips rendered from them) and stored
failure payloads (stack, context, tags);
source maps of a release once it had no session for the retention period and none was uploaded
in it either (pinned releases stay).
What stays: sessions, failure summaries, clusters/issues with their counts, markers.

Crash safety without a journal file: the transaction that detaches rows (blob_key/replay_key ->
NULL) also writes the detached keys into `purge_queue`; blobs are deleted afterwards and their
queue entries removed last. A run killed anywhere leaves either rows still pointing at intact
blobs or queued keys whose rows are already detached, and every run starts by draining the queue.
So no row ever points at a missing blob, and nothing leaks.

Segments: many chunk rows share one segment file (one per ingest writer group and site). The
detaching transaction queues a chunk key only when no live row points at it any more (an index
lookup on chunks.blob_key, in the same transaction), so a segment split across purge batches or
runs goes with its last row. Rows from before segments own their blob and go the same way.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from retrospec.clock import day_of, iso, now_ms
from retrospec.ingest.guards import DiskGuard, DiskStatus
from retrospec.ingest.usage import prune_usage
from retrospec.jobs.context import JobContext, JobResult
from retrospec.jobs.runs import prune_job_runs
from retrospec.settings import Settings
from retrospec.sites import list_sites
from retrospec.sourcemaps.store import delete_release, digest_referenced, expired_releases
from retrospec.sourcemaps.store import list_files as files_of
from retrospec.storage.blobs import parse_sourcemap_key
from retrospec.video.store import clip_key_live, detach_expired

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
USAGE_DAYS = 90
# In-flight ingests write the blob before committing the row (and the replay job writes a new
# version before pointing the session at it); the server gives up on a write after ~2 minutes,
# so an hour is far beyond any window in which an unreferenced blob can still become referenced.
ORPHAN_GRACE_S = 3600.0
BLOB_PREFIXES = ("chunks", "replays", "sourcemaps", "uploads", "clips")
_REPLAY_NAME = re.compile(r"^v\d+\.zst$")

_CHUNKS_DUE = """
SELECT received_at, session_id, seq, site_id, blob_key, stored_bytes FROM chunks
WHERE blob_key IS NOT NULL AND received_at < ? AND (received_at, session_id, seq) > (?, ?, ?)
ORDER BY received_at, session_id, seq LIMIT ?
"""
_SESSIONS_DUE = """
SELECT last_seen_at, id, site_id, replay_key, coalesce(replay_bytes, 0) FROM sessions
WHERE replay_status NOT IN ('none', 'expired') AND last_seen_at < ?
  AND (last_seen_at, id) > (?, ?)
ORDER BY last_seen_at, id LIMIT ?
"""
# Unclustered failures keep their payload: clustering needs the stack to fingerprint them.
_PAYLOADS_DUE = """
SELECT received_at, id, site_id, length(payload) FROM failures
WHERE payload IS NOT NULL AND received_at < ? AND (received_at, id) > (?, ?)
  AND cluster_id IS NOT NULL
ORDER BY received_at, id LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """Cutoffs (epoch ms): artifacts received before their site's cutoff are purged."""

    now: int
    default_cutoff: int
    site_cutoffs: dict[str, int]
    older_than_s: float | None

    def cutoff(self, site_id: str) -> int:
        """The cutoff that applies to one site."""
        return self.site_cutoffs.get(site_id, self.default_cutoff)

    @property
    def max_cutoff(self) -> int:
        """The latest cutoff of any site: nothing newer is ever a candidate."""
        return max([self.default_cutoff, *self.site_cutoffs.values()])


def policy(
    conn: sqlite3.Connection,
    settings: Settings,
    *,
    now: int | None = None,
    older_than_s: float | None = None,
) -> Policy:
    """Retention cutoffs: --older-than for every site, else per-site days, else retention_days."""
    at = now_ms() if now is None else now
    if older_than_s is not None:
        return Policy(at, at - int(older_than_s * 1000), {}, older_than_s)
    overrides = {
        s.id: at - int(s.retention_days * DAY_MS)
        for s in list_sites(conn)
        if s.retention_days is not None and s.retention_days > 0
    }
    return Policy(at, at - int(settings.retention_days * DAY_MS), overrides, None)


@dataclass(slots=True)
class PurgeReport:
    """What one purge removed (or, with dry_run, would remove)."""

    dry_run: bool
    now: int
    default_cutoff: int
    site_cutoffs: dict[str, int]
    older_than_s: float | None
    chunks: int = 0
    replays: int = 0
    payloads: int = 0
    sourcemaps: int = 0
    clips: int = 0
    orphans: int = 0
    temp_files: int = 0
    resumed: int = 0
    blob_bytes: int = 0
    payload_bytes: int = 0
    job_runs_pruned: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    error_messages: list[str] = field(default_factory=list)

    @property
    def artifacts(self) -> int:
        """Everything removed: chunk and replay blobs, payloads, swept files, resumed keys."""
        return (
            self.chunks
            + self.replays
            + self.payloads
            + self.sourcemaps
            + self.clips
            + self.orphans
            + self.temp_files
            + self.resumed
        )

    @property
    def bytes_freed(self) -> int:
        """Blob bytes deleted plus payload bytes cleared in SQLite (reused by later writes)."""
        return self.blob_bytes + self.payload_bytes

    def as_dict(self) -> dict[str, Any]:
        """The stable `retrospec purge --json` schema (documented in the README)."""
        rate = self.artifacts / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {
            "dry_run": self.dry_run,
            "now": iso(self.now),
            "older_than_s": self.older_than_s,
            "cutoff": iso(self.default_cutoff),
            "site_cutoffs": {k: iso(v) for k, v in sorted(self.site_cutoffs.items())},
            "removed": {
                "chunks": self.chunks,
                "replays": self.replays,
                "payloads": self.payloads,
                "sourcemaps": self.sourcemaps,
                "clips": self.clips,
                "orphans": self.orphans,
                "temp_files": self.temp_files,
                "resumed": self.resumed,
            },
            "artifacts": self.artifacts,
            "bytes_freed": self.bytes_freed,
            "blob_bytes_freed": self.blob_bytes,
            "payload_bytes_freed": self.payload_bytes,
            "job_runs_pruned": self.job_runs_pruned,
            "errors": self.errors,
            "error_messages": self.error_messages[:20],
            "elapsed_s": round(self.elapsed_s, 3),
            "artifacts_per_s": round(rate, 1),
        }

    def summary(self) -> str:
        """One line for job_runs.message and logs."""
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {self.chunks} chunks, {self.replays} replays, {self.payloads} failure "
            f"payloads, {self.sourcemaps} source maps, {self.orphans + self.temp_files} orphans"
            + (f", {self.resumed} left by an interrupted run" if self.resumed else "")
            + f"; {self.bytes_freed} bytes"
        )


def disk_status(settings: Settings) -> DiskStatus:
    """Free disk on the data directory's filesystem and the configured floor, read now."""
    floor, reserve = settings.min_free_disk_mb, settings.disk_reserve_mb
    guard = DiskGuard(settings.data_path, floor, interval=0, reserve_mb=reserve)
    return guard.status()


def run(ctx: JobContext) -> JobResult:
    """The "purge" job (scheduler, `retrospec jobs run purge` and `retrospec purge`)."""
    opts = ctx.options
    report = purge(
        ctx,
        now=opts.get("now"),
        older_than_s=opts.get("older_than_s"),
        dry_run=bool(opts.get("dry_run", False)),
        orphan_grace_s=float(opts.get("orphan_grace_s", ORPHAN_GRACE_S)),
        pause_s=float(opts.get("pause_s", 0.0)),
    )
    return JobResult(
        items=report.artifacts,
        errors=report.errors,
        message=report.summary(),
        details=report.as_dict(),
    )


def purge(
    ctx: JobContext,
    *,
    now: int | None = None,
    older_than_s: float | None = None,
    dry_run: bool = False,
    orphan_grace_s: float = ORPHAN_GRACE_S,
    pause_s: float = 0.0,
) -> PurgeReport:
    """Remove expired artifacts in bounded batches; safe to overlap with ingest and other runs.

    pause_s sleeps after each row transaction, before its blobs go (tests kill a run there).
    """
    started = time.monotonic()
    reader = ctx.reader()
    try:
        pol = policy(reader, ctx.settings, now=now, older_than_s=older_than_s)
        report = PurgeReport(
            dry_run=dry_run,
            now=pol.now,
            default_cutoff=pol.default_cutoff,
            site_cutoffs=dict(pol.site_cutoffs),
            older_than_s=older_than_s,
        )
        grace_cutoff = pol.now / 1000 - orphan_grace_s
        if dry_run:
            _count_due(reader, pol, ctx.settings.job_batch_size, report)
            _sweep(ctx, reader, grace_cutoff, report, delete=False)
        else:
            purger = _Purger(ctx, reader, pol, report, pause_s)
            purger.drain_queue(resumed=True)  # finish whatever a killed run left behind
            purger.chunks()
            purger.sessions()
            purger.clips()
            purger.payloads()
            purger.sourcemaps()
            _sweep(ctx, reader, grace_cutoff, report, delete=True)
            report.job_runs_pruned = int(ctx.write(prune_job_runs))
            # Quota counters are tiny; keep 90 days of them for `sites usage` and debugging.
            keep_from = day_of(report.now) - USAGE_DAYS
            ctx.write(lambda c: prune_usage(c, keep_from))
    finally:
        reader.close()
    report.elapsed_s = time.monotonic() - started
    log.info("purge: %s", report.summary())
    return report


class _Purger:
    """One purge run: detach a batch of rows and queue their keys, delete the blobs, repeat."""

    def __init__(
        self,
        ctx: JobContext,
        reader: sqlite3.Connection,
        pol: Policy,
        report: PurgeReport,
        pause_s: float,
    ) -> None:
        self.ctx = ctx
        self.reader = reader
        self.pol = pol
        self.report = report
        self.pause_s = pause_s
        self.batch = ctx.settings.job_batch_size
        self.failed: set[str] = set()  # tried once this run; the next run tries again

    def _between_batches(self) -> None:
        if self.pause_s > 0:
            self.ctx.stop.wait(self.pause_s)
        self.ctx.check_stop()

    def chunks(self) -> None:
        """Detach expired chunk blobs (rows keep their counts; purged_at records when)."""
        cursor: tuple[Any, ...] = (-1, "", -1)

        def detach(conn: sqlite3.Connection) -> tuple[int, int, Any, bool]:
            rows = conn.execute(_CHUNKS_DUE, (self.pol.max_cutoff, *cursor, self.batch)).fetchall()
            due = [r for r in rows if r[0] < self.pol.cutoff(r[3])]
            stamp = now_ms()
            conn.executemany(
                "UPDATE chunks SET blob_key = NULL, purged_at = ? "
                "WHERE session_id = ? AND seq = ? AND blob_key = ?",
                [(stamp, r[1], r[2], r[4]) for r in due],
            )
            detached: dict[str, int] = {}
            for r in due:
                detached[str(r[4])] = detached.get(str(r[4]), 0) + int(r[5])
            # A segment's other rows may be in a later batch (or not due yet): it is queued
            # by the transaction that detaches its last row. Queue bytes are this batch's share.
            keys = [(k, size) for k, size in detached.items() if not _chunk_key_live(conn, k)]
            _enqueue(conn, "chunk", keys, stamp)
            last = tuple(rows[-1][:3]) if rows else cursor
            return len(due), len(keys), last, len(rows) < self.batch

        done = False
        while not done:
            count, queued, cursor, done = self.ctx.write(detach)
            self.report.chunks += count
            if count:
                self._between_batches()
            if queued:
                self.drain_queue()
            self.ctx.check_stop()

    def sessions(self) -> None:
        """Expire replays: the session row stays (status 'expired'), the artifact goes."""
        cursor: tuple[Any, ...] = (-1, "")

        def detach(conn: sqlite3.Connection) -> tuple[int, Any, bool]:
            rows = conn.execute(
                _SESSIONS_DUE, (self.pol.max_cutoff, *cursor, self.batch)
            ).fetchall()
            due = [r for r in rows if r[0] < self.pol.cutoff(r[2])]
            stamp = now_ms()
            # replay_chunks = chunks: nothing is left to build, so the replay job must not pick
            # the session up again from chunks whose blobs are gone.
            conn.executemany(
                "UPDATE sessions SET replay_key = NULL, replay_status = 'expired', "
                "expired_at = ?, replay_chunks = chunks WHERE id = ?",
                [(stamp, r[1]) for r in due],
            )
            keys = [(str(r[3]), int(r[4])) for r in due if r[3]]
            _enqueue(conn, "replay", keys, stamp)
            last = tuple(rows[-1][:2]) if rows else cursor
            return len(due), last, len(rows) < self.batch

        done = False
        while not done:
            expired, cursor, done = self.ctx.write(detach)
            self.report.replays += expired
            if expired:
                self._between_batches()
                self.drain_queue()
            self.ctx.check_stop()

    def clips(self) -> None:
        """Expire the clips of expired replays: the row stays (status 'expired'), the files go."""
        while True:
            count = int(self.ctx.write(lambda c: _detach_clips(c, self.batch)))
            self.report.clips += count
            if count:
                self.drain_queue()
            self.ctx.check_stop()
            if count < self.batch:
                return

    def payloads(self) -> None:
        """Clear stored failure payloads; the failure summary row stays for issues and markers."""
        cursor: tuple[Any, ...] = (-1, -1)

        def clear(conn: sqlite3.Connection) -> tuple[int, int, Any, bool]:
            rows = conn.execute(
                _PAYLOADS_DUE, (self.pol.max_cutoff, *cursor, self.batch)
            ).fetchall()
            due = [r for r in rows if r[0] < self.pol.cutoff(r[2])]
            conn.executemany(
                "UPDATE failures SET payload = NULL WHERE id = ?", [(r[1],) for r in due]
            )
            last = tuple(rows[-1][:2]) if rows else cursor
            return len(due), sum(int(r[3] or 0) for r in due), last, len(rows) < self.batch

        done = False
        while not done:
            cleared, size, cursor, done = self.ctx.write(clear)
            self.report.payloads += cleared
            self.report.payload_bytes += size
            if cleared:
                self._between_batches()
            self.ctx.check_stop()

    def sourcemaps(self) -> None:
        """Drop the maps of releases nobody runs any more (one release per transaction)."""
        for site_id, release in expired_releases(self.reader, self.pol.cutoff, self.pol.max_cutoff):

            def detach(conn: sqlite3.Connection, site: str = site_id, rel: str = release) -> int:
                count, unused = delete_release(conn, site, rel)
                _enqueue(conn, "sourcemap", [(key, 0) for key in unused], now_ms())
                return count

            self.report.sourcemaps += int(self.ctx.write(detach))
            self.drain_queue()
            self.ctx.check_stop()

    def drain_queue(self, *, resumed: bool = False) -> None:
        """Delete queued blobs, then their queue entries (entries of failed deletes stay)."""
        after = ""
        while True:
            rows = self.reader.execute(
                "SELECT key FROM purge_queue WHERE key > ? ORDER BY key LIMIT ?",
                (after, self.batch),
            ).fetchall()
            if not rows:
                return
            after = str(rows[-1][0])
            finished: list[tuple[str]] = []
            for (key,) in rows:
                if key in self.failed:
                    continue
                if _referenced(self.reader, key):
                    # A row points at this key again (not expected to happen); keep the blob.
                    finished.append((key,))
                    continue
                try:
                    self.report.blob_bytes += self.ctx.blobs.delete([key])
                except Exception as exc:  # one bad key must not stop the purge
                    self.failed.add(key)
                    self.report.errors += 1
                    self.report.error_messages.append(f"{key}: {type(exc).__name__}: {exc}")
                    log.warning("purge could not delete %s: %s", key, exc)
                    continue  # its queue entry stays, so the next run tries again
                finished.append((key,))
                if resumed:
                    self.report.resumed += 1
            if finished:
                self.ctx.write(_dequeuer(finished))
            if len(rows) < self.batch:
                return


def _detach_clips(conn: sqlite3.Connection, limit: int) -> int:
    stamp = now_ms()
    count, keys = detach_expired(conn, stamp, limit)
    _enqueue(conn, "clip", keys, stamp)
    return count


def _dequeuer(keys: list[tuple[str]]) -> Callable[[sqlite3.Connection], None]:
    def dequeue(conn: sqlite3.Connection) -> None:
        conn.executemany("DELETE FROM purge_queue WHERE key = ?", keys)

    return dequeue


def _enqueue(conn: sqlite3.Connection, kind: str, keys: list[tuple[str, int]], stamp: int) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO purge_queue (key, kind, bytes, queued_at) VALUES (?, ?, ?, ?)",
        [(key, kind, size, stamp) for key, size in keys],
    )


def _parse_replay_key(key: str) -> tuple[str, str, str] | None:
    """(site_id, session_id, name) of a replay artifact key, else None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "replays" or not _REPLAY_NAME.match(parts[3]):
        return None
    return parts[1], parts[2], parts[3]


def _chunk_key_live(conn: sqlite3.Connection, key: str) -> bool:
    """Whether any chunk row points at key (a segment or an old single-chunk blob)."""
    row = conn.execute("SELECT 1 FROM chunks WHERE blob_key = ? LIMIT 1", (key,)).fetchone()
    return row is not None


def _sourcemap_key_live(conn: sqlite3.Connection, key: str) -> bool:
    parsed = parse_sourcemap_key(key)
    return parsed is not None and digest_referenced(conn, *parsed)


def _referenced(conn: sqlite3.Connection, key: str) -> bool:
    """Whether a row points at key (index or primary-key lookups derived from the key)."""
    if key.startswith("chunks/"):
        return _chunk_key_live(conn, key)
    if key.startswith("sourcemaps/"):
        return _sourcemap_key_live(conn, key)
    if key.startswith("clips/"):
        return clip_key_live(conn, key)
    parsed = _parse_replay_key(key)
    if parsed is None:
        return False
    _site, session, _name = parsed
    row = conn.execute("SELECT replay_key FROM sessions WHERE id = ?", (session,)).fetchone()
    return row is not None and row[0] == key


def _live_replay_keys(conn: sqlite3.Connection, session: str) -> set[str]:
    rows = conn.execute(
        "SELECT replay_key FROM sessions WHERE id = ? AND replay_key IS NOT NULL", (session,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def _walk_dirs(
    walk: Callable[[str], Iterator[tuple[str, int, float]]],
) -> Iterator[tuple[str, list[tuple[str, int, float]]]]:
    """Walked blobs grouped by directory (a session's chunks or replays), one group at a time."""
    for prefix in BLOB_PREFIXES:
        current: str | None = None
        group: list[tuple[str, int, float]] = []
        for entry in walk(prefix):
            directory = entry[0].rsplit("/", 1)[0]
            if directory != current and group:
                yield current or "", group
                group = []
            current = directory
            group.append(entry)
        if group:
            yield current or "", group


def _sweep(
    ctx: JobContext,
    reader: sqlite3.Connection,
    grace_cutoff: float,
    report: PurgeReport,
    *,
    delete: bool,
) -> None:
    """Remove blobs no row points at and stale temp files, all older than the grace period."""
    blobs = ctx.blobs
    for directory, entries in _walk_dirs(blobs.walk):
        old = [e for e in entries if e[2] < grace_cutoff]
        if not old:
            continue
        parts = directory.split("/")
        live: set[str] = set()
        if len(parts) == 3 and parts[0] == "replays":
            live = _live_replay_keys(reader, parts[2])
        for key, size, _mtime in old:
            temp = blobs.is_temp(key)
            if key in live or (not temp and parts[0] == "chunks" and _chunk_key_live(reader, key)):
                continue
            if not temp and parts[0] == "sourcemaps" and _sourcemap_key_live(reader, key):
                continue
            if not temp and parts[0] == "clips" and clip_key_live(reader, key):
                continue
            if delete:
                try:
                    blobs.remove_path(key)
                except Exception as exc:
                    report.errors += 1
                    report.error_messages.append(f"{key}: {type(exc).__name__}: {exc}")
                    continue
            if temp:
                report.temp_files += 1
            else:
                report.orphans += 1
            report.blob_bytes += size
        ctx.check_stop()


def _count_due(reader: sqlite3.Connection, pol: Policy, batch: int, report: PurgeReport) -> None:
    """Dry run: walk the same candidates as a real run, without writing anything."""
    queued = reader.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM purge_queue").fetchone()
    report.resumed, report.blob_bytes = int(queued[0]), int(queued[1])
    # Chunk bytes are freed per blob: a segment only if every row pointing at it is due.
    due_keys: dict[str, tuple[int, int]] = {}
    plans: list[tuple[str, tuple[Any, ...], int, int, int]] = [
        # (query, initial keyset cursor, width of the cursor, site column, bytes column)
        (_CHUNKS_DUE, (-1, "", -1), 3, 3, 5),
        (_SESSIONS_DUE, (-1, ""), 2, 2, 4),
        (_PAYLOADS_DUE, (-1, -1), 2, 2, 3),
    ]
    for index, (query, cursor, width, site_col, bytes_col) in enumerate(plans):
        while True:
            rows = reader.execute(query, (pol.max_cutoff, *cursor, batch)).fetchall()
            for r in rows:
                if r[0] >= pol.cutoff(r[site_col]):
                    continue
                size = int(r[bytes_col] or 0)
                if index == 0:
                    report.chunks += 1
                    rows_due, bytes_due = due_keys.get(str(r[4]), (0, 0))
                    due_keys[str(r[4])] = (rows_due + 1, bytes_due + size)
                elif index == 1:
                    report.replays += 1
                    report.blob_bytes += size
                else:
                    report.payloads += 1
                    report.payload_bytes += size
            if len(rows) < batch:
                break
            cursor = tuple(rows[-1][:width])
    report.sourcemaps = sum(
        len(files_of(reader, site, release=release))
        for site, release in expired_releases(reader, pol.cutoff, pol.max_cutoff)
    )
    for key, (rows_due, bytes_due) in due_keys.items():
        live = reader.execute("SELECT count(*) FROM chunks WHERE blob_key = ?", (key,)).fetchone()
        if int(live[0]) <= rows_due:
            report.blob_bytes += bytes_due
