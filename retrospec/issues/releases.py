"""Releases per site, in first-seen order: the `releases` table, the list, and "newer than".

Release strings are arbitrary ("2024.11.3", "a1b2c3d", "main-417"), so RetroSpec never sorts
them: a release is newer than another when RetroSpec first saw it later (in a session or a
failure of that site). The cluster job feeds the table from sessions active since its last look
(a cursor in `meta`) and from the failures it clusters; "resolve in next release" compares
releases by that order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from retrospec.sourcemaps.store import releases_with_maps

_CURSOR_KEY = "releases.sessions_cursor"
# Ingest commits sessions with the time they were received, slightly after a reader may have
# looked: re-read a margin (upserts are idempotent).
_CURSOR_MARGIN_MS = 10_000
SWEEP_LIMIT = 20_000


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    """One release of a site as `releases list` shows it."""

    site_id: str
    site_name: str
    release: str
    first_seen_at: int | None  # None: maps uploaded, release not seen yet
    last_seen_at: int | None
    sessions: int
    failures: int
    new_issues: int
    regressions: int
    maps: int


def sessions_since(
    conn: sqlite3.Connection,
) -> tuple[list[tuple[str, str, int, int]], int | None]:
    """(site, release, first start, last seen) of sessions active since the cursor, and the new
    cursor (None when nothing moved). A read: run it outside the write transaction."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_CURSOR_KEY,)).fetchone()
    cursor = int(row[0]) if row else 0
    rows = conn.execute(
        "SELECT site_id, release, started_at, last_seen_at FROM sessions "
        "WHERE last_seen_at > ? ORDER BY last_seen_at LIMIT ?",
        (cursor, SWEEP_LIMIT),
    ).fetchall()
    if not rows:
        return [], None
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    for site_id, release, started, last in rows:
        if release is None or release == "":
            continue
        key = (str(site_id), str(release))
        first, newest = seen.get(key, (int(started), int(last)))
        seen[key] = (min(first, int(started)), max(newest, int(last)))
    newest_seen = int(rows[-1][3])
    # A full page means more to read: continue from where it ended next time, no margin.
    next_cursor = newest_seen if len(rows) == SWEEP_LIMIT else newest_seen - _CURSOR_MARGIN_MS
    return [(s, r, a, b) for (s, r), (a, b) in seen.items()], max(cursor, next_cursor)


def record_sessions(
    conn: sqlite3.Connection, rows: Sequence[tuple[str, str, int, int]], cursor: int | None
) -> None:
    """Upsert releases seen in sessions and move the cursor (on the writer)."""
    _upsert(conn, [(s, r, a, b, 0) for s, r, a, b in rows])
    if cursor is not None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_CURSOR_KEY, str(cursor)),
        )


def record_failures(conn: sqlite3.Connection, seen: Iterable[tuple[str, str, int]]) -> None:
    """Upsert releases from clustered failures: (site, release, received_at) each."""
    acc: dict[tuple[str, str], list[int]] = {}
    for site_id, release, at in seen:
        entry = acc.setdefault((site_id, release), [at, at, 0])
        entry[0] = min(entry[0], at)
        entry[1] = max(entry[1], at)
        entry[2] += 1
    _upsert(conn, [(s, r, a, b, n) for (s, r), (a, b, n) in acc.items()])


def _upsert(conn: sqlite3.Connection, rows: list[tuple[str, str, int, int, int]]) -> None:
    if not rows:
        return
    conn.executemany(
        "INSERT INTO releases (site_id, release, first_seen_at, last_seen_at, failures) "
        "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM sites WHERE id = ?) "
        "ON CONFLICT (site_id, release) DO UPDATE SET "
        "first_seen_at = min(releases.first_seen_at, excluded.first_seen_at), "
        "last_seen_at = max(releases.last_seen_at, excluded.last_seen_at), "
        "failures = releases.failures + excluded.failures",
        [(s, r, a, b, n, s) for s, r, a, b, n in rows],
    )


def _order(conn: sqlite3.Connection, site_id: str, release: str) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT first_seen_at FROM releases WHERE site_id = ? AND release = ?",
        (site_id, release),
    ).fetchone()
    return None if row is None else (int(row[0]), release)


def is_newer(conn: sqlite3.Connection, site_id: str, release: str, than: str) -> bool:
    """Whether `release` was first seen after `than` (an unknown release is the newest)."""
    if release == than:
        return False
    mine, theirs = _order(conn, site_id, release), _order(conn, site_id, than)
    if mine is None:
        return True
    if theirs is None:
        return False
    return mine > theirs


def latest_release(conn: sqlite3.Connection, site_id: str) -> str | None:
    """The site's most recently first-seen release, or None."""
    row = conn.execute(
        "SELECT release FROM releases WHERE site_id = ? ORDER BY first_seen_at DESC, release DESC "
        "LIMIT 1",
        (site_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def _counts(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in conn.execute(sql, params).fetchall() if r[0] is not None}


def list_releases(conn: sqlite3.Connection, site_id: str, site_name: str) -> list[ReleaseRow]:
    """Every release of a site, newest first, with its sessions, failures and issues."""
    rows = conn.execute(
        "SELECT release, first_seen_at, last_seen_at, failures FROM releases WHERE site_id = ? "
        "ORDER BY first_seen_at DESC, release DESC",
        (site_id,),
    ).fetchall()
    known = {str(r[0]) for r in rows}
    maps = releases_with_maps(conn, site_id)
    sessions = _counts(
        conn,
        "SELECT release, count(*) FROM sessions WHERE site_id = ? AND release IS NOT NULL "
        "GROUP BY release",
        (site_id,),
    )
    new_issues = _counts(
        conn,
        "SELECT first_release, count(*) FROM clusters WHERE site_id = ? "
        "AND status IN ('open', 'resolved', 'ignored') GROUP BY first_release",
        (site_id,),
    )
    regressions = _counts(
        conn,
        "SELECT e.release, count(*) FROM issue_events e JOIN clusters c ON c.id = e.cluster_id "
        "WHERE c.site_id = ? AND e.action = 'regressed' GROUP BY e.release",
        (site_id,),
    )
    out = [
        ReleaseRow(
            site_id=site_id,
            site_name=site_name,
            release=str(r[0]),
            first_seen_at=int(r[1]),
            last_seen_at=int(r[2]),
            sessions=sessions.get(str(r[0]), 0),
            failures=int(r[3]),
            new_issues=new_issues.get(str(r[0]), 0),
            regressions=regressions.get(str(r[0]), 0),
            maps=maps.get(str(r[0]), 0),
        )
        for r in rows
    ]
    # Releases with maps uploaded but never seen yet (uploaded before the deploy).
    for release, count in sorted(maps.items()):
        if release not in known:
            out.append(ReleaseRow(site_id, site_name, release, None, None, 0, 0, 0, 0, count))
    return out
