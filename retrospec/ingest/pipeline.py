"""The protocol-neutral ingest pipeline: who may send, what is kept, and the durable write.

Every front door (our SDK's POST /api/v1/ingest; later Sentry envelopes) decodes its own wire
format into an Envelope and hands it here: the key and origin checks, the rate limit, the disk
floor and the batched write are the same for all of them, and `accept` returns only after the
group holding the batch has committed.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Executor

from retrospec.errors import BadRequest, Forbidden, InsufficientStorage, InvalidKey, RateLimited
from retrospec.ingest import prepare
from retrospec.ingest.envelope import Envelope
from retrospec.ingest.guards import DiskGuard, RateLimiter, retry_after_header
from retrospec.ingest.write import PendingChunk, stage_batches, write_batches
from retrospec.settings import Settings
from retrospec.sites import KeyCache, Site, site_for_key
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import ReadPool, Writer

# Failure-only batches are still taken when disk is low, as long as they are this small.
SMALL_BATCH_BYTES = 65_536


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
        limiter: RateLimiter,
        disk: DiskGuard,
        io_pool: Executor,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.reads = reads
        self.keys = keys
        self.limiter = limiter
        self.disk = disk
        self.io_pool = io_pool
        # One object for every request, so the writer stages a group's batches together.
        self._stage = functools.partial(stage_batches, blobs)

    async def lookup(self, key: str) -> Site | None:
        """Site for a key, through the short-lived cache."""
        hit, site = self.keys.get(key)
        if hit:
            return site
        site = await self.reads.run(site_for_key, key)
        self.keys.put(key, site)
        return site

    async def admit(self, key: str, origin: str | None) -> Site:
        """The site a request may write to, or the refusal (401, 403, 429)."""
        if not key:
            raise InvalidKey("missing ingest key: pass ?key= or the X-Retrospec-Key header")
        site = await self.lookup(key)
        if site is None:
            raise InvalidKey("unknown or revoked ingest key")
        if not site.allows_origin(origin):
            raise Forbidden(f"origin {origin} is not allowed for site {site.name}")
        wait = self.limiter.check(site.id)
        if wait > 0:
            raise RateLimited(
                f"rate limit for site {site.name} exceeded; retry later",
                headers={"retry-after": retry_after_header(wait)},
            )
        return site

    async def accept(self, site: Site, env: Envelope, received_at: int, *, body_bytes: int) -> bool:
        """Store one batch durably; False when it repeats a stored (session, seq)."""
        settings = self.settings
        if env.site and env.site not in (site.id, site.name):
            raise InvalidKey(f"this key belongs to site {site.name!r}, not {env.site!r}")
        if len(env.failures) > settings.max_failures_per_batch:
            raise BadRequest(
                f"a batch may carry at most {settings.max_failures_per_batch} failures"
            )
        events = prepare.event_bytes(env)
        if (events is not None or body_bytes > SMALL_BATCH_BYTES) and self.disk.low():
            raise InsufficientStorage(
                "the server is low on disk; replay data is refused, failures are still taken"
            )
        chunk: PendingChunk | None = None
        if events is not None and len(events) <= prepare.INLINE_COMPRESS_BYTES:
            chunk = prepare.compress_events(events)
        elif events is not None:
            loop = asyncio.get_running_loop()
            chunk = await loop.run_in_executor(self.io_pool, prepare.compress_events, events)
        batch = prepare.prepare(site, env, chunk, received_at)
        # The writer writes the group's chunks as one segment per site, then the rows.
        stored: bool = await self.writer.run_batched(write_batches, batch, stage=self._stage)
        return stored
