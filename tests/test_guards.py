"""Rate limiter and disk floor (the in-memory ingest guards)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from retrospec.ingest.guards import DiskGuard, RateLimiter, retry_after_header


def test_rate_limiter_allows_the_burst_then_asks_to_wait() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.check("a") for _ in range(5)] == [0.0] * 5
    wait = limiter.check("a")
    assert 0 < wait <= 0.1  # one token comes back every 1/rate seconds
    assert limiter.check("b") == 0.0  # sites have their own buckets
    time.sleep(0.15)
    assert limiter.check("a") == 0.0


def test_rate_limit_zero_disables_it() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.check("a") == 0.0 for _ in range(1000))


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"


def test_disk_guard_compares_free_space_with_the_floor(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    assert DiskGuard(tmp_path, floor_mb=1).low() is False
    assert DiskGuard(tmp_path, floor_mb=free_mb + 10_000).low() is True
    guard = DiskGuard(tmp_path, floor_mb=1, interval=60)
    first = guard.free_bytes()
    assert guard.free_bytes() == first  # cached between re-reads
