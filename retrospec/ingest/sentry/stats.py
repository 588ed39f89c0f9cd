"""The Sentry front door's own tables: items accepted but not stored (counted per site, day and
type), and error ids that replay segments named (so a later error joins the replay's session).

Writes are one batch function for the writer (group-committed with ingest); reads are plain
functions of a connection.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field

from retrospec.clock import day_of

LINK_TTL_MS = 86_400_000  # an error arrives seconds after the segment that named it


@dataclass(frozen=True, slots=True)
class Tally:
    """What one envelope adds: item counts, and (event id, session id) links from error_ids."""

    site_id: str
    at: int
    counts: dict[str, int] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()


_COUNT_UPSERT = """
INSERT INTO sentry_item_counts (site_id, day, item_type, count) VALUES (?, ?, ?, ?)
ON CONFLICT (site_id, day, item_type)
    DO UPDATE SET count = sentry_item_counts.count + excluded.count
"""
_LINK_INSERT = """
INSERT INTO sentry_error_links (site_id, event_id, session_id, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (site_id, event_id) DO NOTHING
"""


def write_tallies(conn: sqlite3.Connection, tallies: list[Tally]) -> list[None]:
    """Add many envelopes' tallies with one statement per table (a writer batch function)."""
    counts: Counter[tuple[str, int, str]] = Counter()
    for t in tallies:
        for item_type, n in t.counts.items():
            counts[(t.site_id, day_of(t.at), item_type)] += n
    if counts:
        conn.executemany(_COUNT_UPSERT, [(*key, n) for key, n in sorted(counts.items())])
    links = [(t.site_id, event, session, t.at) for t in tallies for event, session in t.links]
    if links:
        conn.executemany(_LINK_INSERT, links)
        oldest = min(t.at for t in tallies) - LINK_TTL_MS
        conn.execute("DELETE FROM sentry_error_links WHERE created_at < ?", (oldest,))
    return [None] * len(tallies)


def linked_session(conn: sqlite3.Connection, site_id: str, event_id: str) -> str | None:
    """The replay session a segment named this error in, if any."""
    row = conn.execute(
        "SELECT session_id FROM sentry_error_links WHERE site_id = ? AND event_id = ?",
        (site_id, event_id),
    ).fetchone()
    return None if row is None else str(row[0])


def item_counts(conn: sqlite3.Connection, site_id: str, since_ms: int) -> dict[str, int]:
    """Items counted for a site since a time (whole UTC days), by type, largest first."""
    rows = conn.execute(
        "SELECT item_type, sum(count) FROM sentry_item_counts WHERE site_id = ? AND day >= ? "
        "GROUP BY item_type ORDER BY sum(count) DESC, item_type",
        (site_id, day_of(since_ms)),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
