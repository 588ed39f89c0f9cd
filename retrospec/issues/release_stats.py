"""Releases as the data knows them today: sessions and failures per site and release.

A small read for GET /api/v1/releases. Sessions and failures carry the release the SDK was told;
this groups them per (site, release) with first and last seen, and counts the issues whose first
failure came with that release (new_issues). It scans the release columns (no index: the
failures table is the ingest hot path), which is fine for an API call and not for a page that
refreshes itself.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from retrospec.clock import iso
from retrospec.sites import get_site


@dataclass(frozen=True, slots=True)
class ReleaseStats:
    """One release of one site."""

    site_id: str
    site_name: str
    release: str
    first_seen: int
    last_seen: int
    sessions: int
    failures: int
    new_issues: int


def list_releases(conn: sqlite3.Connection, *, site: str | None = None) -> list[ReleaseStats]:
    """Every (site, release) seen in sessions or failures, most recently seen first."""
    site_id = get_site(conn, site).id if site else None
    where = " AND site_id = ?" if site_id else ""
    params: tuple[Any, ...] = (site_id,) if site_id else ()
    stats: dict[tuple[str, str], list[int]] = {}  # [first, last, sessions, failures, new]
    for sid, release, first, last, n in conn.execute(
        "SELECT site_id, release, min(started_at), max(last_seen_at), count(*) FROM sessions "
        f"WHERE release IS NOT NULL{where} GROUP BY site_id, release",
        params,
    ):
        stats[(str(sid), str(release))] = [int(first), int(last), int(n), 0, 0]
    for sid, release, first, last, n in conn.execute(
        "SELECT site_id, release, min(received_at), max(received_at), count(*) FROM failures "
        f"WHERE release IS NOT NULL{where} GROUP BY site_id, release",
        params,
    ):
        row = stats.setdefault((str(sid), str(release)), [int(first), int(last), 0, 0, 0])
        row[0], row[1] = min(row[0], int(first)), max(row[1], int(last))
        row[3] = int(n)
    for sid, release, n in conn.execute(
        "SELECT site_id, rel, count(*) FROM (SELECT c.site_id, (SELECT f.release FROM failures f "
        "WHERE f.cluster_id = c.id ORDER BY f.received_at, f.id LIMIT 1) AS rel FROM clusters c "
        f"WHERE c.status IN ('open', 'resolved', 'ignored'){where.replace('site_id', 'c.site_id')}"
        ") firsts WHERE rel IS NOT NULL GROUP BY site_id, rel",
        params,
    ):
        key = (str(sid), str(release))
        if key in stats:
            stats[key][4] = int(n)
    names = dict(conn.execute("SELECT id, name FROM sites").fetchall())
    out = [
        ReleaseStats(sid, str(names.get(sid, sid)), rel, *values)
        for (sid, rel), values in stats.items()
    ]
    out.sort(key=lambda r: (-r.last_seen, r.site_name, r.release))
    return out


def release_json(r: ReleaseStats) -> dict[str, Any]:
    """One release as GET /api/v1/releases returns it (unknown facts are null)."""
    return {
        "release": r.release,
        "site": {"id": r.site_id, "name": r.site_name},
        "first_seen": iso(r.first_seen),
        "last_seen": iso(r.last_seen),
        "sessions": r.sessions,
        "failures": r.failures,
        "new_issues": r.new_issues,
        "regressions": None,  # regressions are not tied to a release yet
        "has_maps": None,  # source maps arrive with releases proper
    }
