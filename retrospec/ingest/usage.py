"""Per-site daily quotas: what each site stored per UTC day (the site_usage table) and the check.

The write that stores a group of batches bumps `site_usage` in the same transaction
(`record_usage`), so the counters are exactly what was committed. The pipeline keeps a copy in
memory (`Quotas`), read once per site and day, and reserves each batch against it before the
write; a refused or duplicate batch gives its reservation back. Batches being written at the
same moment can overshoot a quota by one writer group at most.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

DAY_MS = 86_400_000

USAGE_UPSERT = """
INSERT INTO site_usage (site_id, day, batches, failures, bytes) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (site_id, day) DO UPDATE SET
    batches = site_usage.batches + excluded.batches,
    failures = site_usage.failures + excluded.failures,
    bytes = site_usage.bytes + excluded.bytes
"""


@dataclass(slots=True)
class Usage:
    """One site's counters for one UTC day."""

    day: int
    batches: int = 0
    failures: int = 0
    bytes: int = 0


def load_usage(conn: sqlite3.Connection, site_id: str, day: int) -> Usage:
    """A site's stored counters for a day (zeros when it stored nothing yet)."""
    row = conn.execute(
        "SELECT batches, failures, bytes FROM site_usage WHERE site_id = ? AND day = ?",
        (site_id, day),
    ).fetchone()
    if row is None:
        return Usage(day)
    return Usage(day, int(row[0]), int(row[1]), int(row[2]))


def record_usage(conn: sqlite3.Connection, rows: Sequence[tuple[str, int, int, int, int]]) -> None:
    """Add (site_id, day, batches, failures, bytes) to the counters (inside the write)."""
    if rows:
        conn.executemany(USAGE_UPSERT, rows)


def usage_rows(conn: sqlite3.Connection, day: int) -> list[tuple[str, int, int, int]]:
    """(site_id, batches, failures, bytes) of every site for a day."""
    rows = conn.execute(
        "SELECT site_id, batches, failures, bytes FROM site_usage WHERE day = ? ORDER BY site_id",
        (day,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]


def prune_usage(conn: sqlite3.Connection, before_day: int) -> int:
    """Forget counters of days before before_day (purge keeps 90 days)."""
    return int(conn.execute("DELETE FROM site_usage WHERE day < ?", (before_day,)).rowcount)


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Per site and UTC day; 0 means no limit."""

    batches: int
    failures: int
    bytes: int


class Quotas:
    """The in-memory copy of today's counters, one entry per site."""

    def __init__(self, limits: QuotaLimits) -> None:
        self.limits = limits
        self._today: dict[str, Usage] = {}

    def cached(self, site_id: str, day: int) -> Usage | None:
        """Today's counters when already loaded (None: load them with load_usage first)."""
        usage = self._today.get(site_id)
        return usage if usage is not None and usage.day == day else None

    def remember(self, site_id: str, usage: Usage) -> Usage:
        """Keep counters read from the database, unless a newer copy arrived meanwhile."""
        current = self._today.get(site_id)
        if current is not None and current.day == usage.day:
            return current
        self._today[site_id] = usage
        return usage

    def over(self, usage: Usage, *, failures: int, has_events: bool) -> str | None:
        """Which quota one more batch would break: 'batches', 'failures', 'bytes' or None."""
        lim = self.limits
        if lim.batches and usage.batches + 1 > lim.batches:
            return "batches"
        if lim.failures and failures and usage.failures + failures > lim.failures:
            return "failures"
        if lim.bytes and has_events and usage.bytes >= lim.bytes:
            return "bytes"
        return None

    @staticmethod
    def reserve(usage: Usage, *, failures: int) -> None:
        """Count a batch before its write (bytes are added once they are known)."""
        usage.batches += 1
        usage.failures += failures

    @staticmethod
    def release(usage: Usage, *, failures: int) -> None:
        """Give a reservation back (the batch was refused or repeated a stored one)."""
        usage.batches -= 1
        usage.failures -= failures
