"""The sessions list (/sessions), the replay page (/sessions/{id}) and its events endpoint."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import partial
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from retrospec.errors import BadRequest, NotFound
from retrospec.ids import is_session_id
from retrospec.replay import artifact
from retrospec.replay import queries as replays
from retrospec.sites import get_site, list_sites
from retrospec.storage.blobs import decompress
from retrospec.web.access import runtime
from retrospec.web.compress import VariantCache, choose, compress
from retrospec.web.offload import in_pool
from retrospec.web.render import SECURITY_HEADERS, is_fragment_request, page, replay_headers

PAGE_SIZE = 50
# The marker list's first screen is in the page; the rest comes from /markers (lazy list).
FIRST_MARKERS = 40
MARKER_KINDS = ("failure", "rage_click", "click", "navigation", "input")
JUMP_BEFORE_MS = 3000


@dataclass(frozen=True, slots=True)
class SessionFilters:
    """The sessions list's query string, cleaned."""

    site: str = ""
    failures: bool = False
    user: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Any) -> SessionFilters:
        """From request.query_params."""
        try:
            number = max(1, min(10_000, int(params.get("page") or 1)))
        except ValueError:
            number = 1
        return cls(
            site=(params.get("site") or "").strip()[:100],
            failures=params.get("failures") in ("1", "on", "true"),
            user=(params.get("user") or "").strip()[:200],
            page=number,
        )

    def as_query(self) -> dict[str, Any]:
        """Non-default values, for links that keep the filters."""
        values: dict[str, Any] = {
            "site": self.site,
            "failures": "1" if self.failures else "",
            "user": self.user,
            "page": "" if self.page == 1 else self.page,
        }
        return {k: v for k, v in values.items() if v}


def _replay_page_data(
    conn: sqlite3.Connection, sid: str
) -> tuple[replays.SessionView, list[replays.Marker], list[replays.FailureView], str]:
    session = replays.get_session(conn, sid)
    return (
        session,
        replays.list_markers(conn, sid),
        replays.list_session_failures(conn, sid),
        get_site(conn, session.site_id).replay_assets,
    )


@get("/sessions", name="sessions")
async def session_list(request: Request[Any, Any, Any]) -> Response[str]:
    """Recorded sessions, newest activity first."""
    rt = runtime(request)
    f = SessionFilters.parse(request.query_params)
    offset = (f.page - 1) * PAGE_SIZE

    def read(conn: sqlite3.Connection) -> tuple[list[Any], int]:
        try:
            return replays.list_sessions(
                conn,
                site=f.site or None,
                with_failures=f.failures,
                user=f.user or None,
                limit=PAGE_SIZE,
                offset=offset,
            )
        except NotFound:
            return [], 0

    items, total = await rt.reads.run(read)
    sites = [] if is_fragment_request(request) else await rt.reads.run(list_sites)
    context = {
        "section": "sessions",
        "f": f,
        "query_args": f.as_query(),
        "items": items,
        "total": total,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "sites": sites,
    }
    return page(request, "sessions.html", context, fragment="_session_list.html")


def _offset_param(value: str | None) -> int:
    """?t= as a non-negative offset in ms, or -1 when absent or unreadable."""
    try:
        return max(0, int(value)) if value else -1
    except ValueError:
        return -1


def _session_id(value: str) -> str:
    if not is_session_id(value):
        raise NotFound("no such session")
    return value


def _first_segments(session: replays.SessionView, start_at: int) -> list[int]:
    """The segments the player fetches first for ?t=start_at (replay.js makes the same pick)."""
    if not session.segments:
        return [0]
    first_ts = session.segments[0].start_ts
    last_ts = session.segments[-1].end_ts
    base = session.replay_start_ts if session.replay_start_ts is not None else first_ts
    target = base + start_at if start_at >= 0 else first_ts
    return artifact.needed(session.segments, min(max(target, first_ts), last_ts))


@get("/sessions/{session_id:str}")
async def replay_page(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[str]:
    """The replay with its markers and captured failures; ?t=<ms> opens at that offset."""
    rt = runtime(request)
    sid = _session_id(session_id)
    session, markers, failures, assets = await rt.reads.run(_replay_page_data, sid)
    start_at = _offset_param(request.query_params.get("t"))
    playable = session.replay_key is not None and not session.expired
    counts = {k: 0 for k in MARKER_KINDS}
    for m in markers:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    preload: list[str] = []
    if playable:
        # What the player fetches first, asked for by the page head before any script runs.
        preload = [
            f"/sessions/{sid}/events?seg={i}&rev={session.replay_rev}"
            for i in _first_segments(session, start_at)
        ]
        if len(markers) > FIRST_MARKERS:
            preload.append(f"/sessions/{sid}/markers")
    context = {
        "section": "sessions",
        "s": session,
        "preload": preload,
        # The first screen only: a long session has thousands of markers, which the page
        # fetches from /markers and shows in a virtual list (replay.js).
        "markers": markers[:FIRST_MARKERS],
        "marker_total": len(markers),
        "replay_index": replay_index(session) if playable else None,
        "failures": failures,
        "playable": playable,
        "start_at": start_at,
        "jump_before_ms": JUMP_BEFORE_MS,
        "retention_days": rt.settings.retention_days,
        "counts": counts,
        "replay_assets": assets,
    }
    # The recorded page plays in an about:blank frame, under this page's policy: by default
    # its remote assets are blocked (see render.CSP).
    return page(request, "replay.html", context, headers=replay_headers(assets))


@get("/sessions/{session_id:str}/state")
async def replay_state(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[str]:
    """Polled by a replay page still waiting for its artifact: reload once it changed."""
    rt = runtime(request)
    sid = _session_id(session_id)
    session = await rt.reads.run(replays.get_session, sid)
    seen = request.query_params.get("key") or ""
    current = session.replay_key or session.replay_status
    headers = dict(SECURITY_HEADERS)
    if current != seen:
        headers["hx-refresh"] = "true"
    return Response("", status_code=200, headers=headers, media_type="text/plain")


# Decompressed replay data in gzip form, for browsers that do not accept zstd (the stored form).
_GZIP_CACHE = VariantCache(16 * 1024 * 1024)


def _segment_index(raw: str | None) -> int:
    try:
        index = int(raw or "")
    except ValueError:
        raise BadRequest("seg must be a segment number") from None
    if index < 0:
        raise BadRequest("seg must be a segment number")
    return index


def _read_segment(rt: Any, session: replays.SessionView, index: int, coding: str | None) -> bytes:
    stored = replays.load_segment(rt.blobs, session, index)
    if coding == "zstd":
        return stored
    if coding is None:
        return decompress(stored)
    key = (rt.blobs.url, session.replay_key or "", str(index), coding)
    return _GZIP_CACHE.get_or_make(key, lambda: compress(decompress(stored), coding))


def _read_all(rt: Any, key: str, coding: str | None) -> bytes:
    body = replays.load_events(rt.blobs, key)
    return compress(body, coding) if coding is not None else body


@get("/sessions/{session_id:str}/events")
async def replay_events(
    request: Request[Any, Any, Any], session_id: FromPath[str]
) -> Response[bytes]:
    """The replay's rrweb events as a JSON array: every event, or ?seg=N one segment.

    A segment goes out as stored (zstd) when the browser accepts it, else gzip from a cache;
    ?rev= names the artifact the caller's index describes (404 once a rebuild replaced it).
    """
    rt = runtime(request)
    sid = _session_id(session_id)
    params = request.query_params
    seg = None if params.get("seg") is None else _segment_index(params.get("seg"))
    session = await rt.reads.run(replays.get_session, sid)
    rev, key = session.replay_rev, session.replay_key
    if rev is None or key is None or session.expired:
        raise NotFound("this session has no replay to play")
    if params.get("rev") not in (None, rev):
        raise NotFound("this replay was rebuilt: reload its segment index")
    offered = ("zstd", "gzip") if seg is not None else ("gzip",)
    coding = choose(request.headers.get("accept-encoding", ""), offered)
    # The artifact under a key never changes (a rebuild writes a new key), so key, segment and
    # encoding make a strong validator: revisiting a replay costs a 304.
    etag = f'"{rev}-{"all" if seg is None else seg}-{coding or "identity"}"'
    headers = {
        **SECURITY_HEADERS,
        "cache-control": "private, no-cache",
        "etag": etag,
        "vary": "Accept-Encoding, Cookie",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    if seg is None:
        body = await in_pool(rt, partial(_read_all, rt, key, coding))
    else:
        body = await in_pool(rt, partial(_read_segment, rt, session, seg, coding))
    if coding is not None:
        headers["content-encoding"] = coding
    return Response(body, media_type="application/json", headers=headers)


def replay_index(session: replays.SessionView) -> dict[str, Any] | None:
    """What the player needs to fetch a replay by segment (None without a playable one)."""
    if session.replay_rev is None or session.expired:
        return None
    if session.segments is not None:
        segments = [[s.start_ts, s.end_ts, s.events, int(s.checkpoint)] for s in session.segments]
    else:  # built before segments: one segment, the whole artifact
        start = session.replay_start_ts or 0
        segments = [[start, session.replay_end_ts or start, 0, 1]]
    return {
        "rev": session.replay_rev,
        "status": session.replay_status,
        "last_seen_at": session.last_seen_at,
        "segments": segments,
    }


@get("/sessions/{session_id:str}/segments")
async def replay_segments(
    request: Request[Any, Any, Any], session_id: FromPath[str]
) -> Response[Any]:
    """The replay's segment index, polled by a player watching a session still recording."""
    rt = runtime(request)
    session = await rt.reads.run(replays.get_session, _session_id(session_id))
    body = {"index": replay_index(session)}
    return Response(body, headers={**SECURITY_HEADERS, "vary": "Cookie"})


@get("/sessions/{session_id:str}/markers")
async def replay_markers(
    request: Request[Any, Any, Any], session_id: FromPath[str]
) -> Response[Any]:
    """Every timeline marker, [ts, offset_ms, kind, label] in time order, for the lazy list."""
    rt = runtime(request)
    markers = await rt.reads.run(replays.list_markers, _session_id(session_id))
    body = {
        "fields": ["ts", "offset_ms", "kind", "label"],
        "markers": [[m.ts, m.offset_ms, m.kind, m.label or ""] for m in markers],
    }
    return Response(body, headers={**SECURITY_HEADERS, "vary": "Cookie"})


HANDLERS = [
    session_list,
    replay_page,
    replay_state,
    replay_events,
    replay_segments,
    replay_markers,
]
