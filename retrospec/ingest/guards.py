"""Ingest guards kept in memory: per-site rate limits and the free-disk floor."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path


class RateLimiter:
    """Token bucket per site: `rate` batches per second with a burst allowance."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, site_id: str) -> float:
        """Take one token; return 0 if allowed, else the seconds to wait before retrying."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, last = self._buckets.get(site_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[site_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[site_id] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """Retry-After wants whole seconds; never tell a client 0."""
    return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True, slots=True)
class DiskStatus:
    """Free space under the data directory against the ingest floor."""

    free_bytes: int
    floor_bytes: int

    @property
    def low(self) -> bool:
        """Whether the server is refusing replay data right now."""
        return self.free_bytes < self.floor_bytes


class DiskGuard:
    """Free space under the data directory, re-read at most every `interval` seconds."""

    def __init__(self, path: Path, floor_mb: int, interval: float = 2.0) -> None:
        self.path = path
        self.floor_bytes = floor_mb * 1024 * 1024
        self.interval = interval
        self._checked = -math.inf
        self._free = 0

    def free_bytes(self) -> int:
        """Free bytes on the data directory's filesystem (cached briefly)."""
        now = time.monotonic()
        if now - self._checked >= self.interval:
            path = self.path
            while not path.exists() and path != path.parent:  # not created yet: its filesystem
                path = path.parent
            self._free = shutil.disk_usage(path).free
            self._checked = now
        return self._free

    def status(self) -> DiskStatus:
        """Free bytes and the floor, as one value."""
        return DiskStatus(self.free_bytes(), self.floor_bytes)

    def low(self) -> bool:
        """Whether replay data should be refused."""
        return self.free_bytes() < self.floor_bytes
