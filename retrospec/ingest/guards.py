"""Ingest guards kept in memory: rate buckets (site, client, session) and the disk floors."""

from __future__ import annotations

import functools
import ipaddress
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path


class RateLimiter:
    """Token buckets by key: `rate` batches per second with a burst allowance each.

    Memory stays bounded: past `max_entries` keys, buckets that have refilled completely (they
    would start full anyway) are forgotten, and under a flood of distinct keys all of them.
    """

    def __init__(self, rate: float, burst: int, *, max_entries: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.max_entries = max_entries
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        """Whether this limiter refuses anything (a rate of 0 turns it off)."""
        return self.rate > 0

    def check(self, key: str) -> float:
        """Take one token; return 0 if allowed, else the seconds to wait before retrying."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        entry = self._buckets.get(key)
        if entry is None:
            if len(self._buckets) >= self.max_entries:
                self._forget_full(now)
            tokens = float(self.burst)
        else:
            tokens = min(float(self.burst), entry[0] + (now - entry[1]) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full = [
            k
            for k, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_entries:
            self._buckets.clear()


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The three buckets a batch passes: its client address, its session, then its site."""

    site: RateLimiter
    client: RateLimiter
    session: RateLimiter


def client_key(address: str | None) -> str | None:
    """The bucket key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber)."""
    if not address:
        return None
    # Parsing an address costs microseconds per request and clients send many: cache it.
    return _client_key(address[:64])


@functools.lru_cache(maxsize=4096)
def _client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def retry_after_header(seconds: float) -> str:
    """Retry-After wants whole seconds; never tell a client 0."""
    return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True, slots=True)
class DiskStatus:
    """Free space under the data directory against the two ingest floors."""

    free_bytes: int
    floor_bytes: int
    reserve_bytes: int = 0

    @property
    def low(self) -> bool:
        """Below min_free_disk_mb: replay data is refused (failures are still taken)."""
        return self.free_bytes < self.floor_bytes

    @property
    def critical(self) -> bool:
        """Below disk_reserve_mb: every batch is refused, so SQLite never meets a full disk."""
        return self.free_bytes < self.reserve_bytes


class DiskGuard:
    """Free space under the data directory, re-read at most every `interval` seconds.

    Between re-reads, `spend` lowers the cached figure by what ingest just wrote, so a burst
    cannot run past the floors while the cache is stale.
    """

    def __init__(
        self, path: Path, floor_mb: int, interval: float = 2.0, *, reserve_mb: int = 0
    ) -> None:
        self.path = path
        self.floor_bytes = floor_mb * 1024 * 1024
        # The reserve sits at or below the replay floor (a floor of 0 turns both off).
        self.reserve_bytes = min(reserve_mb, floor_mb) * 1024 * 1024
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

    def spend(self, nbytes: int) -> None:
        """Count bytes just written against the cached free space (until the next re-read)."""
        self._free -= max(0, nbytes)

    def status(self) -> DiskStatus:
        """Free bytes and the floors, as one value."""
        return DiskStatus(self.free_bytes(), self.floor_bytes, self.reserve_bytes)

    def low(self) -> bool:
        """Whether replay data should be refused."""
        return self.free_bytes() < self.floor_bytes

    def critical(self) -> bool:
        """Whether every batch should be refused."""
        return self.free_bytes() < self.reserve_bytes
