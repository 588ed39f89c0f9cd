"""Session replays: the artifact reader and the session read API (dashboard and CLI).

The build lives in replay/build.py (run by replay/job.py), markers and the summary in
replay/markers.py, element names in replay/dom.py.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retrospec.errors import NotFound
from retrospec.replay import artifact
from retrospec.replay.job import MAX_FAILURE_MARKERS
from retrospec.replay.markers import (
    FailureRow,
    MarkerRow,
    failure_label,
    merge_failure_markers,
    url_host,
)
from retrospec.sites import get_site
from retrospec.storage.blobs import BlobStore


def load_events(blobs: BlobStore, replay_key: str) -> bytes:
    """The replay's events as one JSON array, every segment (NotFound if the artifact is gone).

    The one way to read a whole replay: the format (segments, older one-frame artifacts) is
    replay/artifact.py's business.
    """
    try:
        return artifact.read_all(blobs, replay_key)
    except FileNotFoundError:
        raise NotFound("this replay's data is no longer stored") from None


def load_segment(blobs: BlobStore, session: SessionView, index: int) -> bytes:
    """One segment's stored zstd frame (an unsegmented artifact: index 0, the whole blob)."""
    if session.replay_key is None or session.expired:
        raise NotFound("this session has no replay to play")
    segments = session.segments
    if segments is None:
        if index != 0:
            raise NotFound(f"no segment {index} in this replay")
        segment = None
    elif 0 <= index < len(segments):
        segment = segments[index]
    else:
        raise NotFound(f"no segment {index} in this replay")
    try:
        return artifact.read_segment(blobs, session.replay_key, segment)
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
    segments: list[artifact.Segment] | None  # None: an artifact from before segments

    @property
    def replay_rev(self) -> str | None:
        """A short token naming the stored artifact (a rebuild writes a new key, so a new one)."""
        if self.replay_key is None:
            return None
        return hashlib.sha256(self.replay_key.encode()).hexdigest()[:16]


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
s.chunks, s.batches, s.expired_at, s.replay_segments
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
        segments=artifact.parse_index(row["replay_segments"]),
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


def get_session(conn: sqlite3.Connection, session_id: str) -> SessionView:
    """One session (NotFound if there is none with this id)."""
    rows = conn.execute(
        f"SELECT {_SESSION_COLUMNS} {_SESSION_FROM} WHERE s.id = ?", (session_id,)
    ).fetchall()
    for row in rows:
        return _session(row)
    raise NotFound(f"no session {session_id}")


def list_markers(conn: sqlite3.Connection, session_id: str) -> list[Marker]:
    """Timeline markers in time order; failure markers always reflect the failures table."""
    start = conn.execute(_START_SQL, (session_id,)).fetchone()
    if start is None:
        raise NotFound(f"no session {session_id}")
    stored = conn.execute(_MARKER_SQL, (session_id,)).fetchall()
    failures = conn.execute(_MARKER_FAILURES_SQL, (session_id, MAX_FAILURE_MARKERS)).fetchall()
    return _markers(start, stored, failures)


def list_session_failures(conn: sqlite3.Connection, session_id: str) -> list[FailureView]:
    """A session's failures in time order with their offset in the replay."""
    start = list(conn.execute(_START_SQL, (session_id,)).fetchall())
    if not start:
        raise NotFound(f"no session {session_id}")
    replay_start = start[0][0]
    rows = conn.execute(
        f"SELECT {_FAILURE_COLUMNS} FROM failures WHERE session_id = ? ORDER BY ts, id",
        (session_id,),
    ).fetchall()
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


def list_sessions(
    conn: sqlite3.Connection,
    *,
    site: str | None = None,
    with_failures: bool = False,
    user: str | None = None,
    limit: int = 50,
    offset: int = 0,
    before: tuple[int, str] | None = None,
) -> tuple[list[SessionView], int]:
    """Sessions, newest activity first, and the total matching (site by id or name).

    before = (last_seen_at, id) of the previous page's last row pages by keyset (the JSON
    API's cursor); the total still counts every match.
    """
    where: list[str] = []
    params: list[Any] = []
    if site is not None:
        where.append("s.site_id = ?")
        params.append(get_site(conn, site).id)
    if with_failures:
        where.append("s.failures > 0")
    if user:
        where.append(
            "(s.user_id = ? OR s.user_email = ? COLLATE NOCASE OR s.user_key = ? "
            "OR s.anonymous_id = ?)"
        )
        params.extend([user, user, user, user])
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total_rows = list(conn.execute(f"SELECT count(*) FROM sessions s{clause}", params).fetchall())
    page_where, page_params = list(where), list(params)
    if before is not None:
        page_where.append("(s.last_seen_at < ? OR (s.last_seen_at = ? AND s.id < ?))")
        page_params += [int(before[0]), int(before[0]), str(before[1])]
    page_clause = (" WHERE " + " AND ".join(page_where)) if page_where else ""
    rows = conn.execute(
        f"SELECT {_SESSION_COLUMNS} {_SESSION_FROM}{page_clause} "
        "ORDER BY s.last_seen_at DESC, s.id DESC LIMIT ? OFFSET ?",
        [*page_params, max(0, int(limit)), max(0, int(offset))],
    ).fetchall()
    return [_session(r) for r in rows], int(total_rows[0][0])
