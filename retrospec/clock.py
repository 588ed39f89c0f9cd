"""Time: every *_at column is integer milliseconds since the Unix epoch, UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Current UTC time in epoch milliseconds (the one storage format for *_at columns)."""
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an ISO 8601 UTC string (for JSON output)."""
    if ms is None:
        return None
    return to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replay_clock(ms: int | float | None) -> str:
    """An offset into a replay as m:ss, h:mm:ss past an hour ('-:--' when unknown)."""
    if ms is None:
        return "-:--"
    seconds = max(0, int(ms // 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def day_of(ms: int) -> int:
    """UTC day number (days since the epoch) of a timestamp, for daily counters."""
    return ms // 86_400_000
