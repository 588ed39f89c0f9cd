"""The live parts of one server process, built once by create_app and shared by every handler."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from retrospec.auth import LoginThrottle
from retrospec.ingest.guards import DiskGuard, RateLimiter, RateLimits
from retrospec.ingest.pipeline import Pipeline
from retrospec.scheduler import Scheduler
from retrospec.settings import Settings
from retrospec.sites import KeyCache
from retrospec.startup import Startup
from retrospec.storage.blobs import BlobStore, set_store_options
from retrospec.storage.db import ReadPool, Writer


@dataclass
class Runtime:
    """Settings plus the long-lived resources of one server process."""

    settings: Settings
    startup: Startup
    writer: Writer
    reads: ReadPool
    blobs: BlobStore
    keys: KeyCache
    limits: RateLimits
    disk: DiskGuard
    io_pool: ThreadPoolExecutor
    pipeline: Pipeline
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    started_at: float = field(default_factory=time.time)
    scheduler: Scheduler | None = None

    @property
    def secret(self) -> bytes:
        """The instance's signing secret."""
        return self.startup.secret

    @classmethod
    def build(cls, settings: Settings, startup: Startup) -> Runtime:
        """Create (not start) the resources for settings."""
        writer = Writer(settings.database, synchronous=settings.sqlite_synchronous)
        reads = ReadPool(settings.database)
        set_store_options(settings.blob_options)
        blobs = BlobStore(settings.effective_blob_url)
        keys = KeyCache()
        limits = RateLimits(
            site=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            client=RateLimiter(
                settings.client_rate_limit_per_second, settings.client_rate_limit_burst
            ),
            session=RateLimiter(
                settings.session_rate_limit_per_second, settings.session_rate_limit_burst
            ),
        )
        disk = DiskGuard(
            settings.data_path, settings.min_free_disk_mb, reserve_mb=settings.disk_reserve_mb
        )
        io_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="retrospec-io")
        pipeline = Pipeline(
            settings,
            writer=writer,
            reads=reads,
            blobs=blobs,
            keys=keys,
            limits=limits,
            disk=disk,
            io_pool=io_pool,
        )
        return cls(
            settings=settings,
            startup=startup,
            writer=writer,
            reads=reads,
            blobs=blobs,
            keys=keys,
            limits=limits,
            disk=disk,
            io_pool=io_pool,
            pipeline=pipeline,
        )
