"""The live parts of a running server, built once by create_app and shared by every handler."""

from __future__ import annotations

import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrospec.ingest.guards import DiskGuard, RateLimiter
from retrospec.settings import Settings
from retrospec.sites import KeyCache
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import ReadPool, Writer


def instance_secret(settings: Settings) -> bytes:
    """The signing secret: from settings, else generated once into <data_dir>/secret (0600)."""
    if settings.secret:
        return settings.secret.encode("utf-8")
    path = settings.data_path / "secret"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its secret
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


@dataclass
class Runtime:
    """Settings plus the long-lived resources of one server process."""

    settings: Settings
    secret: bytes
    writer: Writer
    reads: ReadPool
    blobs: BlobStore
    keys: KeyCache
    limiter: RateLimiter
    disk: DiskGuard
    io_pool: ThreadPoolExecutor
    started_at: float = field(default_factory=time.time)
    scheduler: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Create (not start) the resources for settings."""
        data: Path = settings.data_path
        return cls(
            settings=settings,
            secret=instance_secret(settings),
            writer=Writer(settings.db_path, synchronous=settings.sqlite_synchronous),
            reads=ReadPool(settings.db_path),
            blobs=BlobStore(settings.effective_blob_url),
            keys=KeyCache(),
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            disk=DiskGuard(data, settings.min_free_disk_mb),
            io_pool=ThreadPoolExecutor(max_workers=4, thread_name_prefix="retrospec-io"),
        )
