"""Rate limiter and disk floor (the in-memory ingest guards)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from retrospec.ingest.guards import DiskGuard, RateLimiter, client_key, retry_after_header


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


def test_rate_limiter_keys_are_independent_and_memory_stays_bounded() -> None:
    limiter = RateLimiter(rate=0.001, burst=2, max_entries=100)
    assert [limiter.check("site|1.2.3.4") for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.check("site|1.2.3.4") > 0
    assert limiter.check("site|5.6.7.8") == 0.0
    for i in range(1000):  # a flood of distinct clients
        limiter.check(f"site|10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) <= 100


def test_client_keys_group_ipv6_by_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key(None) is None and client_key("not an address") == "not an address"


def test_disk_reserve_sits_below_the_floor_and_spending_counts(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    guard = DiskGuard(tmp_path, floor_mb=free_mb + 100, reserve_mb=free_mb + 200, interval=60)
    status = guard.status()
    assert status.low and status.reserve_bytes == status.floor_bytes  # capped at the floor
    ok = DiskGuard(tmp_path, floor_mb=1, reserve_mb=0, interval=60)
    assert not ok.status().low and not ok.critical()
    ok.spend(ok.free_bytes() - 1024)  # writes since the last read count before the next one
    assert ok.low() is True and ok.critical() is False
    assert DiskGuard(tmp_path, floor_mb=0).status().critical is False
