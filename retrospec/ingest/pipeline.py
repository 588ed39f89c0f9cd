"""The protocol-neutral ingest pipeline: who may send, what is kept, and the durable write.

Every front door (our SDK's POST /api/v1/ingest; later Sentry envelopes) decodes its own wire
format into an Envelope and hands it here, so every guard below holds for all of them, and
`accept` returns only after the group holding the batch has committed:

- admit: the key, the origin, then three token buckets: the client's address (IPv6 by /64),
  then the site (a client over its own bucket never drains the site's), and in accept the
  browser session.
- accept: failures and events per batch, the disk floors, the site's daily quotas, per-session
  replay limits, privacy (ingest.scrub via prepare) and compact failure storage.

Disk, the rule the SDK relies on: below `min_free_disk_mb` a batch with replay data gets 507
(the SDK drops the replay data and resends the failures, same sequence number); below
`disk_reserve_mb`, or when the disk really is full, every batch gets 507, which for failures
always means "nothing was stored, retry later" (never "dropped"). A full disk is a 507, not a
500.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from concurrent.futures import Executor

from retrospec.clock import day_of
from retrospec.errors import (
    BadRequest,
    Forbidden,
    InsufficientStorage,
    InvalidKey,
    RateLimited,
)
from retrospec.ingest import prepare
from retrospec.ingest.envelope import Envelope
from retrospec.ingest.guards import DiskGuard, RateLimits, client_key, retry_after_header
from retrospec.ingest.usage import DAY_MS, QuotaLimits, Quotas, Usage, load_usage
from retrospec.ingest.write import (
    PendingChunk,
    PreparedBatch,
    SessionLimits,
    stage_batches,
    write_batches,
)
from retrospec.settings import Settings
from retrospec.sites import KeyCache, Site, site_for_key
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import SQLITE_FULL, ReadPool, Writer

# Keys are 28 characters; anything much longer is not one (and is not worth hashing).
MAX_KEY_CHARS = 256
# How long a client waits after a 507 before retrying its failures.
DISK_RETRY_AFTER_S = 60
# Batches whose failures carry more text than this are prepared (scrubbed) off the event loop.
PREPARE_INLINE_BYTES = 65_536
# SQLite and blob bytes on disk per accounted byte (indexes, WAL, then the checkpointed page).
_DISK_PER_BYTE = 3


class Pipeline:
    """One per server process; shared by every ingest front door."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: Writer,
        reads: ReadPool,
        blobs: BlobStore,
        keys: KeyCache,
        limits: RateLimits,
        disk: DiskGuard,
        io_pool: Executor,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.reads = reads
        self.keys = keys
        self.limits = limits
        self.disk = disk
        self.io_pool = io_pool
        self.quotas = Quotas(
            QuotaLimits(
                batches=settings.quota_batches_per_day,
                failures=settings.quota_failures_per_day,
                bytes=settings.quota_mb_per_day * 1024 * 1024,
            )
        )
        self.keep = settings.kept_query_params
        session_limits = SessionLimits(
            raw_bytes=settings.max_session_mb * 1024 * 1024, events=settings.max_session_events
        )
        # One object each for every request, so the writer groups a group's batches together.
        self._stage = functools.partial(stage_batches, blobs, limits=session_limits)
        self._write = functools.partial(write_batches, limits=session_limits)

    async def lookup(self, key: str) -> Site | None:
        """Site for a key, through the short-lived cache."""
        if len(key) > MAX_KEY_CHARS:
            return None
        hit, site = self.keys.get(key)
        if hit:
            return site
        site = await self.reads.run(site_for_key, key)
        self.keys.put(key, site)
        return site

    async def admit(self, key: str, origin: str | None, client_address: str | None = None) -> Site:
        """The site a request may write to, or the refusal (401, 403, 429).

        client_address is the address the request came from (the peer, or what a trusted proxy
        header says); it keys the per-client bucket checked before the site's, so one client
        cannot spend a site's whole budget. None (a front door without one) skips that bucket.
        """
        if not key:
            raise InvalidKey("missing ingest key: pass ?key= or the X-Retrospec-Key header")
        site = await self.lookup(key)
        if site is None:
            raise InvalidKey("unknown or revoked ingest key")
        if not site.allows_origin(origin):
            raise Forbidden(f"origin {origin} is not allowed for site {site.name}")
        if self.limits.client.enabled:
            client = client_key(client_address)
            if client is not None:
                _take(self.limits.client.check(f"{site.id}|{client}"), "this client")
        _take(self.limits.site.check(site.id), f"site {site.name}")
        return site

    async def usage(self, site: Site, day: int) -> Usage:
        """The site's counters for a UTC day (read from SQLite once per site and day)."""
        cached = self.quotas.cached(site.id, day)
        if cached is not None:
            return cached
        stored = await self.reads.run(load_usage, site.id, day)
        return self.quotas.remember(site.id, stored)

    async def accept(self, site: Site, env: Envelope, received_at: int, *, body_bytes: int) -> bool:
        """Store one batch durably; False when it repeats a stored (session, seq).

        Raises the refusal otherwise, with nothing stored: 400, 413 (too many failures or
        events, or the session is over its replay limit), 429 (the session's bucket or a daily
        quota), 507 (the disk floors, or the disk is full).
        """
        settings = self.settings
        if env.site and env.site not in (site.id, site.name):
            raise InvalidKey(f"this key belongs to site {site.name!r}, not {env.site!r}")
        if len(env.failures) > settings.max_failures_per_batch:
            raise BadRequest(
                f"a batch may carry at most {settings.max_failures_per_batch} failures"
            )
        if self.limits.session.enabled:
            _take(self.limits.session.check(f"{site.id}|{env.session.id}"), "this session")
        events = prepare.event_bytes(env)
        failures = len(env.failures)
        self._check_disk(events is not None)
        usage = await self.usage(site, day_of(received_at))
        self._check_quota(site, usage, failures, events is not None, received_at)
        # Reserved before any await: concurrent batches see each other's counts.
        self.quotas.reserve(usage, failures=failures)
        stored = False
        try:
            chunk: PendingChunk | None = None
            if events is not None:
                chunk = await self._pack(events)
            batch = await self._prepare(site, env, chunk, received_at, body_bytes)
            try:
                # The writer writes the group's chunks as one segment per site, then the rows.
                stored = bool(await self.writer.run_batched(self._write, batch, stage=self._stage))
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode == SQLITE_FULL:
                    raise InsufficientStorage(
                        "the server's disk is full; the batch was not stored, retry later",
                        headers={"retry-after": str(DISK_RETRY_AFTER_S)},
                    ) from None
                raise
            if stored:
                usage.bytes += batch.accounted_bytes
                self.disk.spend(batch.accounted_bytes * _DISK_PER_BYTE)
            return stored
        finally:
            if not stored:
                self.quotas.release(usage, failures=failures)

    async def _pack(self, events: bytes) -> PendingChunk:
        max_events = self.settings.max_events_per_batch
        if len(events) <= prepare.INLINE_COMPRESS_BYTES:
            return prepare.pack_events(events, max_events, self.keep)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.io_pool, prepare.pack_events, events, max_events, self.keep
        )

    async def _prepare(
        self, site: Site, env: Envelope, chunk: PendingChunk | None, received_at: int, size: int
    ) -> PreparedBatch:
        # Scrubbing is linear in the failures' text; a big batch of it is done on the I/O pool,
        # where the event loop gets the interpreter back every millisecond. The body's size
        # bounds its text, so most batches skip measuring it.
        if size <= PREPARE_INLINE_BYTES or prepare.failure_text_bytes(env) <= PREPARE_INLINE_BYTES:
            return prepare.prepare(site, env, chunk, received_at, keep=self.keep)
        loop = asyncio.get_running_loop()
        work = functools.partial(prepare.prepare, site, env, chunk, received_at, keep=self.keep)
        return await loop.run_in_executor(self.io_pool, work)

    def _check_disk(self, has_events: bool) -> None:
        free = self.disk.free_bytes()
        if free >= self.disk.floor_bytes:
            return  # the common case, checked on every request
        retry = {"retry-after": str(DISK_RETRY_AFTER_S)}
        if free < self.disk.reserve_bytes:
            raise InsufficientStorage(
                "the server is almost out of disk; the batch was not stored, retry later",
                headers=retry,
            )
        if has_events:
            raise InsufficientStorage(
                "the server is low on disk: replay data is refused; failures are still taken "
                "(send them without events)",
                headers=retry,
            )

    def _check_quota(
        self, site: Site, usage: Usage, failures: int, has_events: bool, now: int
    ) -> None:
        which = self.quotas.over(usage, failures=failures, has_events=has_events)
        if which is None:
            return
        wait = ((day_of(now) + 1) * DAY_MS - now) / 1000
        lim = self.quotas.limits
        if which == "bytes":
            raise InsufficientStorage(
                f"site {site.name} stored its {lim.bytes // (1024 * 1024)} MB for today: replay "
                "data is refused until 00:00 UTC; failures are still taken",
                headers={"retry-after": retry_after_header(wait)},
            )
        amount = lim.batches if which == "batches" else lim.failures
        raise RateLimited(
            f"site {site.name} reached its daily quota of {amount} {which}; retry after 00:00 UTC",
            headers={"retry-after": retry_after_header(wait)},
        )


def _take(wait: float, who: str) -> None:
    if wait > 0:
        raise RateLimited(
            f"rate limit for {who} exceeded; retry later",
            headers={"retry-after": retry_after_header(wait)},
        )
