"""Writing ingest batches: segments before the transaction, rows inside it (the writer's job).

The writer thread writes the new chunks of one writer group and one site as ONE segment file
(`stage_batches`, before BEGIN IMMEDIATE; one zstd frame per chunk, concatenated), then inserts
the rows pointing at (segment key, offset, length) in one transaction (`write_batches`). A file
create costs far more than the bytes in it, so this is what lets chunk ingest scale. Rows written
before segments point at a whole single-chunk blob (offset and length NULL).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from retrospec.clock import day_of, now_ms
from retrospec.errors import Forbidden, InsufficientStorage, PayloadTooLarge, StorageFailed
from retrospec.ingest.usage import record_usage
from retrospec.storage.blobs import BlobStore, segment_key
from retrospec.storage.db import insert_rows, transaction

log = logging.getLogger(__name__)

# prepare.prepare() builds rows in the column order of these statements.
SESSION_UPSERT = """
INSERT INTO sessions (
    id, site_id, started_at, last_seen_at, user_id, user_email, user_name, anonymous_id,
    user_key, user_agent, browser, os, entry_url, last_url, release, environment, sdk,
    batches, chunks, failures, raw_bytes, stored_bytes, replay_status, events
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    last_seen_at = max(sessions.last_seen_at, excluded.last_seen_at),
    started_at = min(sessions.started_at, excluded.started_at),
    user_id = coalesce(excluded.user_id, sessions.user_id),
    user_email = coalesce(excluded.user_email, sessions.user_email),
    user_name = coalesce(excluded.user_name, sessions.user_name),
    anonymous_id = coalesce(sessions.anonymous_id, excluded.anonymous_id),
    user_key = coalesce(excluded.user_key, sessions.user_key),
    user_agent = coalesce(sessions.user_agent, excluded.user_agent),
    browser = coalesce(sessions.browser, excluded.browser),
    os = coalesce(sessions.os, excluded.os),
    last_url = coalesce(excluded.last_url, sessions.last_url),
    release = coalesce(excluded.release, sessions.release),
    environment = coalesce(excluded.environment, sessions.environment),
    sdk = coalesce(excluded.sdk, sessions.sdk),
    batches = sessions.batches + 1,
    chunks = sessions.chunks + excluded.chunks,
    failures = sessions.failures + excluded.failures,
    raw_bytes = sessions.raw_bytes + excluded.raw_bytes,
    stored_bytes = sessions.stored_bytes + excluded.stored_bytes,
    events = sessions.events + excluded.events,
    replay_status = CASE
        WHEN excluded.chunks > 0 AND sessions.replay_status = 'none' THEN 'pending'
        ELSE sessions.replay_status END
WHERE sessions.site_id = excluded.site_id
"""

FAILURE_INSERT = """
INSERT INTO failures (
    site_id, session_id, seq, kind, type, message, url, ts, received_at, method, request_url,
    status, duration_ms, release, environment, browser, os, user_key, payload
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """Where a batch's events went: a range of a segment, or (offset None) a whole blob."""

    key: str
    raw_bytes: int
    stored_bytes: int
    offset: int | None = None
    length: int | None = None
    events: int = 0


@dataclass(frozen=True, slots=True)
class PendingChunk:
    """A batch's events compressed (one zstd frame), not yet written: the writer places it."""

    frame: bytes
    raw_bytes: int
    events: int = 0

    @property
    def stored_bytes(self) -> int:
        """Compressed size, as it will be stored."""
        return len(self.frame)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Everything the write needs, computed before taking the write lock."""

    site_id: str
    session_id: str
    seq: int
    received_at: int
    session_row: tuple[object, ...]
    failure_rows: Sequence[tuple[object, ...]]
    chunk: StoredChunk | PendingChunk | None
    # What the failure rows cost in storage (their text and an overhead), for the quotas.
    failure_bytes: int = 0

    @property
    def accounted_bytes(self) -> int:
        """Bytes this batch adds to its site's daily quota: stored events plus failure rows."""
        return self.failure_bytes + (self.chunk.stored_bytes if self.chunk else 0)


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one session may store in all (max_session_mb, max_session_events)."""

    raw_bytes: int
    events: int


def _session_refusals(
    conn: sqlite3.Connection,
    batches: Sequence[PreparedBatch],
    limits: SessionLimits | None,
    skip: set[int],
) -> dict[int, Exception]:
    """Batches whose replay data would take their session past its limits (index -> 413).

    One query over the group's sessions that returns rows only for sessions near a limit, so
    the common case fetches nothing.
    """
    if limits is None:
        return {}
    totals: dict[str, list[int]] = {}
    for i, b in enumerate(batches):
        if i not in skip and b.chunk is not None:
            t = totals.setdefault(b.session_id, [0, 0])
            t[0] += b.chunk.raw_bytes
            t[1] += b.chunk.events
    if not totals:
        return {}
    stored: dict[str, list[int]] = {}
    items = sorted(totals.items())
    for n in range(0, len(items), 300):
        part = items[n : n + 300]
        values = ",".join(["(?, ?, ?)"] * len(part))
        rows = conn.execute(
            f"WITH k(s, raw, ev) AS (VALUES {values}) "
            "SELECT s.id, s.raw_bytes, s.events FROM k JOIN sessions s ON s.id = k.s "
            "WHERE s.raw_bytes + k.raw > ? OR s.events + k.ev > ?",
            [v for sid, (raw, ev) in part for v in (sid, raw, ev)]
            + [limits.raw_bytes, limits.events],
        )
        stored.update((str(r[0]), [int(r[1]), int(r[2])]) for r in rows)
    for sid, (raw, ev) in items:
        if sid not in stored and (raw > limits.raw_bytes or ev > limits.events):
            stored[sid] = [0, 0]  # new in this group, but the group alone breaks a limit
    refused: dict[int, Exception] = {}
    for i, b in enumerate(batches):
        running = stored.get(b.session_id)
        if running is None or i in skip or b.chunk is None:
            continue
        raw, ev = running[0] + b.chunk.raw_bytes, running[1] + b.chunk.events
        if raw > limits.raw_bytes or ev > limits.events:
            refused[i] = PayloadTooLarge(
                f"session {b.session_id} reached its replay limit ({limits.raw_bytes} bytes, "
                f"{limits.events} events); its replay data is refused, failures are still taken"
            )
        else:
            running[0], running[1] = raw, ev
    return refused


CHUNK_INSERT = """
INSERT INTO chunks (
    session_id, seq, site_id, received_at, raw_bytes, stored_bytes, failure_count, blob_key,
    blob_offset, blob_length
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _existing_chunks(
    conn: sqlite3.Connection, pairs: list[tuple[str, int]]
) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for i in range(0, len(pairs), 400):
        part = pairs[i : i + 400]
        values = ",".join(["(?, ?)"] * len(part))
        params = [v for pair in part for v in pair]
        # A join from a VALUES list is planned as primary-key lookups; the equivalent
        # `(session_id, seq) IN (VALUES ...)` scanned the whole table on SQLite 3.40.
        rows = conn.execute(
            f"WITH k(s, q) AS (VALUES {values}) "
            "SELECT c.session_id, c.seq FROM k JOIN chunks c ON c.session_id = k.s AND c.seq = k.q",
            params,
        )
        found.update((str(r[0]), int(r[1])) for r in rows)
    return found


def _foreign_owners(conn: sqlite3.Connection, batches: list[PreparedBatch]) -> dict[str, str]:
    """Stored owner of each session that some batch claims for a different site (rare).

    Sessions stored with the claiming site, and new ones, are left out, so the common case
    fetches no rows at all (the writer thread pays for every row it fetches).
    """
    pairs = sorted({(b.session_id, b.site_id) for b in batches})
    owners: dict[str, str] = {}
    for i in range(0, len(pairs), 400):
        part = pairs[i : i + 400]
        values = ",".join(["(?, ?)"] * len(part))
        rows = conn.execute(
            f"WITH k(s, site) AS (VALUES {values}) "
            "SELECT s.id, s.site_id FROM k JOIN sessions s ON s.id = k.s WHERE s.site_id != k.site",
            [v for pair in part for v in pair],
        )
        owners.update((str(r[0]), str(r[1])) for r in rows)
    return owners


class ChunkNotStaged(RuntimeError):
    """A batch reached the insert with its events still unwritten (the stage step was skipped)."""


def write_batches(
    conn: sqlite3.Connection,
    batches: list[PreparedBatch],
    *,
    limits: SessionLimits | None = None,
) -> list[bool | Exception]:
    """Insert many batches with a few statements (the writer groups concurrent ingests).

    Runs inside the write transaction, after stage_batches placed the events. Returns per batch:
    True if stored, False for an idempotent retry of a stored (session, seq), or an Exception
    instance (nothing written): Forbidden when the session id belongs to another site,
    PayloadTooLarge when its events would take the session past `limits`. The sites' daily
    usage counters grow in the same transaction.
    """
    pairs = [(b.session_id, b.seq) for b in batches]
    existing = _existing_chunks(conn, pairs)
    owners = _foreign_owners(conn, batches)
    repeats = {i for i, pair in enumerate(pairs) if pair in existing}
    over = _session_refusals(conn, batches, limits, repeats)
    results: list[bool | Exception] = []
    accepted: list[PreparedBatch] = []
    for i, (batch, pair) in enumerate(zip(batches, pairs, strict=True)):
        if pair in existing:
            results.append(False)
            continue
        owner = owners.setdefault(batch.session_id, batch.site_id)
        if owner != batch.site_id:
            results.append(Forbidden("this session id belongs to another site"))
            continue
        if i in over:
            results.append(over[i])
            continue
        if isinstance(batch.chunk, PendingChunk):
            # Never a row without its blob: the stage step decides which chunks to write.
            results.append(ChunkNotStaged("the batch's events were not written; retry it"))
            continue
        existing.add(pair)
        accepted.append(batch)
        results.append(True)
    if accepted:
        insert_rows(conn, SESSION_UPSERT, [b.session_row for b in accepted])
        insert_rows(conn, CHUNK_INSERT, [_chunk_row(b) for b in accepted])
        insert_rows(conn, FAILURE_INSERT, [row for b in accepted for row in b.failure_rows])
        record_usage(conn, _usage(accepted))
    return results


def _usage(accepted: list[PreparedBatch]) -> list[tuple[str, int, int, int, int]]:
    per: dict[tuple[str, int], list[int]] = {}
    for b in accepted:
        t = per.setdefault((b.site_id, day_of(b.received_at)), [0, 0, 0])
        t[0] += 1
        t[1] += len(b.failure_rows)
        t[2] += b.accounted_bytes
    return [(site, day, n, f, nbytes) for (site, day), (n, f, nbytes) in per.items()]


def _chunk_row(b: PreparedBatch) -> tuple[object, ...]:
    chunk = b.chunk
    assert not isinstance(chunk, PendingChunk)
    if chunk is None:
        return (b.session_id, b.seq, b.site_id, b.received_at, 0, 0, len(b.failure_rows), None,
                None, None)  # fmt: skip
    return (
        b.session_id,
        b.seq,
        b.site_id,
        b.received_at,
        chunk.raw_bytes,
        chunk.stored_bytes,
        len(b.failure_rows),
        chunk.key,
        chunk.offset,
        chunk.length,
    )


def stage_batches(
    blobs: BlobStore,
    conn: sqlite3.Connection,
    batches: list[PreparedBatch],
    *,
    limits: SessionLimits | None = None,
) -> list[PreparedBatch | Exception]:
    """Write the new chunks of a group as one segment per site; outside any write transaction.

    Runs on the writer connection before BEGIN IMMEDIATE (the writer is the only one inserting
    chunks, so what it reads here is what the transaction will see). Retries of a stored
    (session, seq), repeats within the group and sessions of another site get no bytes. Returns
    per batch the batch with its chunk placed (key, offset, length), or an Exception instance
    for a batch that must not be written (its segment could not be stored, Forbidden, or over
    its session's `limits`). write_batches re-checks everything inside the transaction.
    """
    out: list[PreparedBatch | Exception] = list(batches)
    if not any(isinstance(b.chunk, PendingChunk) for b in batches):
        return out
    pairs = [(b.session_id, b.seq) for b in batches]
    existing = _existing_chunks(conn, pairs)
    owners = _foreign_owners(conn, batches)
    leaders: dict[tuple[str, int], int] = {}
    followers: list[tuple[int, int]] = []  # (index, index of the batch it repeats)
    by_site: dict[str, list[int]] = {}
    skip: set[int] = set()
    for i, pair in enumerate(pairs):
        if pair in existing or pair in leaders:
            skip.add(i)
        else:
            leaders[pair] = i
    leaders.clear()
    over = _session_refusals(conn, batches, limits, skip)
    for i, (batch, pair) in enumerate(zip(batches, pairs, strict=True)):
        if pair in existing:
            continue  # a retry of a stored batch: write_batches answers "duplicate"
        if pair in leaders:
            followers.append((i, leaders[pair]))
            continue
        if owners.setdefault(batch.session_id, batch.site_id) != batch.site_id:
            out[i] = Forbidden("this session id belongs to another site")
            continue
        if i in over:
            out[i] = over[i]
            leaders[pair] = i
            continue
        leaders[pair] = i
        if isinstance(batch.chunk, PendingChunk):
            by_site.setdefault(batch.site_id, []).append(i)
    at = now_ms()
    for site_id, indexes in by_site.items():
        key = segment_key(site_id, at)
        placed: list[tuple[int, StoredChunk]] = []
        frames: list[bytes] = []
        offset = 0
        for i in indexes:
            pending = batches[i].chunk
            assert isinstance(pending, PendingChunk)
            size = len(pending.frame)
            frames.append(pending.frame)
            placed.append(
                (i, StoredChunk(key, pending.raw_bytes, size, offset, size, pending.events))
            )
            offset += size
        try:
            blobs.put_raw(key, b"".join(frames))
        except OSError as exc:
            log.error("could not write segment %s (%d chunks): %s", key, len(indexes), exc)
            for i in indexes:
                out[i] = _storage_error(exc)
            continue
        for i, chunk in placed:
            out[i] = dataclasses.replace(batches[i], chunk=chunk)
    for i, leader in followers:
        # A repeat of a batch earlier in the group shares its fate (and stores nothing itself).
        if isinstance(out[leader], Exception):
            out[i] = out[leader]
    return out


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(
            "the server is out of disk space; the batch was not stored, retry later",
            headers={"retry-after": "60"},
        )
    return StorageFailed("the replay data could not be stored; the batch was not stored")


def store_batches(
    conn: sqlite3.Connection, blobs: BlobStore, batches: list[PreparedBatch]
) -> list[bool | Exception]:
    """Stage and write batches in one call, without the server's writer (CLI, tests, tools).

    conn must not be inside a transaction: the segment is written before the row transaction.
    """
    staged = stage_batches(blobs, conn, batches)
    ready = [b for b in staged if not isinstance(b, Exception)]
    written: list[bool | Exception] = []
    if ready:
        with transaction(conn):
            written = write_batches(conn, ready)
    answers = iter(written)
    return [b if isinstance(b, Exception) else next(answers) for b in staged]


def store_batch(conn: sqlite3.Connection, blobs: BlobStore, batch: PreparedBatch) -> bool:
    """Store one batch (see store_batches); False for an idempotent retry; raises a refusal."""
    (result,) = store_batches(conn, blobs, [batch])
    if isinstance(result, Exception):
        raise result
    return result


def write_batch(conn: sqlite3.Connection, batch: PreparedBatch) -> bool:
    """Insert one batch whose chunk is already stored; False for an idempotent retry."""
    (result,) = write_batches(conn, [batch])
    if isinstance(result, Exception):
        raise result
    return result
