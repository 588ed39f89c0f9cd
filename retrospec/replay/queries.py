"""Session replays: the job entry point, the artifact reader and the session read API.

The build itself lives in replay_build (job), replay_markers (summary and markers) and
replay_dom (element names); this module is what the dashboard, CLI and clustering import.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from retrospec.errors import NotFound
from retrospec.replay.job import MAX_FAILURE_MARKERS, run
from retrospec.replay.markers import (
    FailureRow,
    MarkerRow,
    failure_label,
    merge_failure_markers,
    url_host,
)
from retrospec.storage.blobs import BlobStore

__all__ = [
    "FailureView",
    "Marker",
    "SessionView",
    "get_session",
    "list_markers",
    "list_markers_sync",
    "list_session_failures",
    "list_sessions",
    "load_events",
    "run",
]


def load_events(blobs: BlobStore, replay_key: str) -> bytes:
    """The replay's events as a JSON array (NotFound if the artifact is gone)."""
    try:
        return blobs.get(replay_key)
    except FileNotFoundError:
        raise NotFound("this replay's data is no longer stored") from None


@dataclass(frozen=True, slots=True)
class SessionView:
    """One session with its replay summary."""

    id: str
    site_id: str
    site_name: str
    started_at: int
    last_seen_at: int
    user_id: str | None
    user_email: str | None
    user_name: str | None
    user_key: str | None
    browser: str | None
    os: str | None
    user_agent: str | None
    entry_url: str | None
    last_url: str | None
    release: str | None
    environment: str | None
    replay_status: str
    replay_reason: str | None
    replay_key: str | None
    replay_start_ts: int | None
    replay_end_ts: int | None
    duration_ms: int | None
    active_ms: int | None
    pages: list[str]
    clicks: int | None
    rage_clicks: int | None
    failures: int
    chunks: int
    batches: int
    expired: bool


@dataclass(frozen=True, slots=True)
class Marker:
    """A point on the replay timeline."""

    ts: int
    offset_ms: int
    kind: str
    label: str | None
    failure_id: int | None


@dataclass(frozen=True, slots=True)
class FailureView:
    """A failure of a session, placed on its replay."""

    id: int
    kind: str
    type: str | None
    message: str | None
    url: str | None
    ts: int
    offset_ms: int | None
    method: str | None
    request_url: str | None
    status: int | None
    duration_ms: float | None
    cluster_id: int | None


_SESSION_COLUMNS = """
s.id, s.site_id, sites.name AS site_name, s.started_at, s.last_seen_at, s.user_id,
s.user_email, s.user_name, s.user_key, s.browser, s.os, s.user_agent, s.entry_url, s.last_url,
s.release, s.environment, s.replay_status, s.replay_reason, s.replay_key, s.replay_start_ts,
s.replay_end_ts, s.duration_ms, s.active_ms, s.pages, s.clicks, s.rage_clicks, s.failures,
s.chunks, s.batches, s.expired_at
"""
_SESSION_FROM = " FROM sessions s JOIN sites ON sites.id = s.site_id "
_FAILURE_COLUMNS = (
    "id, kind, type, message, url, ts, method, request_url, status, duration_ms, cluster_id"
)
_MARKER_SQL = (
    "SELECT ts, offset_ms, kind, label, failure_id FROM replay_markers "
    "WHERE session_id = ? ORDER BY ts, id"
)
_START_SQL = "SELECT replay_start_ts, started_at, entry_url FROM sessions WHERE id = ?"
_MARKER_FAILURES_SQL = (
    "SELECT id, kind, type, message, ts, method, request_url, status FROM failures "
    "WHERE session_id = ? ORDER BY ts, id LIMIT ?"
)


def _pages(value: Any) -> list[str]:
    if not value:
        return []
    try:
        pages = json.loads(value)
    except ValueError:
        return []
    return [p for p in pages if isinstance(p, str)] if isinstance(pages, list) else []


def _session(row: sqlite3.Row) -> SessionView:
    return SessionView(
        id=row["id"],
        site_id=row["site_id"],
        site_name=row["site_name"],
        started_at=row["started_at"],
        last_seen_at=row["last_seen_at"],
        user_id=row["user_id"],
        user_email=row["user_email"],
        user_name=row["user_name"],
        user_key=row["user_key"],
        browser=row["browser"],
        os=row["os"],
        user_agent=row["user_agent"],
        entry_url=row["entry_url"],
        last_url=row["last_url"],
        release=row["release"],
        environment=row["environment"],
        replay_status=row["replay_status"],
        replay_reason=row["replay_reason"],
        replay_key=row["replay_key"],
        replay_start_ts=row["replay_start_ts"],
        replay_end_ts=row["replay_end_ts"],
        duration_ms=row["duration_ms"],
        active_ms=row["active_ms"],
        pages=_pages(row["pages"]),
        clicks=row["clicks"],
        rage_clicks=row["rage_clicks"],
        failures=row["failures"],
        chunks=row["chunks"],
        batches=row["batches"],
        expired=row["expired_at"] is not None or row["replay_status"] == "expired",
    )


def _offset(ts: int, start: int | None) -> int | None:
    # A failure a moment before the first recorded event is shown at the start of the replay.
    return None if start is None else max(0, ts - start)


def _markers(
    start_row: Sequence[Any], stored: Sequence[Sequence[Any]], failures: Sequence[Sequence[Any]]
) -> list[Marker]:
    start = start_row[0] if start_row[0] is not None else start_row[1]
    host = url_host(start_row[2])
    live = [
        MarkerRow(int(f[4]), "failure", failure_label(FailureRow(*f), host), int(f[0]))
        for f in failures
    ]
    rows = [MarkerRow(int(m[0]), m[2], m[3], m[4]) for m in stored]
    return [
        Marker(m.ts, max(0, m.ts - start), m.kind, m.label, m.failure_id)
        for m in merge_failure_markers(rows, live)
    ]


async def get_session(conn: aiosqlite.Connection, session_id: str) -> SessionView:
    """One session (NotFound if there is none with this id)."""
    rows = await conn.execute_fetchall(
        f"SELECT {_SESSION_COLUMNS} {_SESSION_FROM} WHERE s.id = ?", (session_id,)
    )
    for row in rows:
        return _session(row)
    raise NotFound(f"no session {session_id}")


async def list_markers(conn: aiosqlite.Connection, session_id: str) -> list[Marker]:
    """Timeline markers in time order; failure markers always reflect the failures table."""
    start = list(await conn.execute_fetchall(_START_SQL, (session_id,)))
    if not start:
        raise NotFound(f"no session {session_id}")
    stored = await conn.execute_fetchall(_MARKER_SQL, (session_id,))
    failures = await conn.execute_fetchall(_MARKER_FAILURES_SQL, (session_id, MAX_FAILURE_MARKERS))
    return _markers(start[0], list(stored), list(failures))


def list_markers_sync(conn: sqlite3.Connection, session_id: str) -> list[Marker]:
    """list_markers for a plain sqlite3 connection (jobs, CLI)."""
    start = conn.execute(_START_SQL, (session_id,)).fetchone()
    if start is None:
        raise NotFound(f"no session {session_id}")
    stored = conn.execute(_MARKER_SQL, (session_id,)).fetchall()
    failures = conn.execute(_MARKER_FAILURES_SQL, (session_id, MAX_FAILURE_MARKERS)).fetchall()
    return _markers(start, stored, failures)


async def list_session_failures(conn: aiosqlite.Connection, session_id: str) -> list[FailureView]:
    """A session's failures in time order with their offset in the replay."""
    start = list(await conn.execute_fetchall(_START_SQL, (session_id,)))
    if not start:
        raise NotFound(f"no session {session_id}")
    replay_start = start[0][0]
    rows = await conn.execute_fetchall(
        f"SELECT {_FAILURE_COLUMNS} FROM failures WHERE session_id = ? ORDER BY ts, id",
        (session_id,),
    )
    return [
        FailureView(
            id=r["id"],
            kind=r["kind"],
            type=r["type"],
            message=r["message"],
            url=r["url"],
            ts=r["ts"],
            offset_ms=_offset(r["ts"], replay_start),
            method=r["method"],
            request_url=r["request_url"],
            status=r["status"],
            duration_ms=r["duration_ms"],
            cluster_id=r["cluster_id"],
        )
        for r in rows
    ]


async def list_sessions(
    conn: aiosqlite.Connection,
    *,
    site: str | None = None,
    with_failures: bool = False,
    user: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[SessionView], int]:
    """Sessions, newest activity first, and the total matching (site by id or name)."""
    where: list[str] = []
    params: list[Any] = []
    if site is not None:
        found = list(
            await conn.execute_fetchall(
                "SELECT id FROM sites WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
                (site, site, site),
            )
        )
        if not found:
            raise NotFound(f"no site {site}")
        where.append("s.site_id = ?")
        params.append(found[0][0])
    if with_failures:
        where.append("s.failures > 0")
    if user:
        where.append(
            "(s.user_id = ? OR s.user_email = ? COLLATE NOCASE OR s.user_key = ? "
            "OR s.anonymous_id = ?)"
        )
        params.extend([user, user, user, user])
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total_rows = list(
        await conn.execute_fetchall(f"SELECT count(*) FROM sessions s{clause}", params)
    )
    rows = await conn.execute_fetchall(
        f"SELECT {_SESSION_COLUMNS} {_SESSION_FROM}{clause} "
        "ORDER BY s.last_seen_at DESC, s.id DESC LIMIT ? OFFSET ?",
        [*params, max(0, int(limit)), max(0, int(offset))],
    )
    return [_session(r) for r in rows], int(total_rows[0][0])
