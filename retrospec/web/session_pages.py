"""The sessions list (/sessions), the replay page (/sessions/{id}) and its events endpoint."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
from dataclasses import dataclass
from functools import partial
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from retrospec.errors import NotFound
from retrospec.ids import is_session_id
from retrospec.replay import queries as replays
from retrospec.sites import get_site, list_sites
from retrospec.web.access import runtime
from retrospec.web.offload import in_pool
from retrospec.web.render import SECURITY_HEADERS, is_fragment_request, page, replay_headers

PAGE_SIZE = 50
# Replays are JSON with long runs of repeated structure: level 5 gets ~90% of level 9's
# ratio at a fraction of the CPU.
GZIP_LEVEL = 5
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


@get("/sessions/{session_id:str}")
async def replay_page(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[str]:
    """The replay with its markers and captured failures; ?t=<ms> opens at that offset."""
    rt = runtime(request)
    sid = _session_id(session_id)
    session, markers, failures, assets = await rt.reads.run(_replay_page_data, sid)
    start_at = _offset_param(request.query_params.get("t"))
    playable = session.replay_key is not None and not session.expired
    marker_data = [
        {"ts": m.ts, "offset": m.offset_ms, "kind": m.kind, "label": m.label or ""} for m in markers
    ]
    context = {
        "section": "sessions",
        "s": session,
        "markers": markers,
        "marker_data": marker_data,
        "failures": failures,
        "playable": playable,
        "start_at": start_at,
        "jump_before_ms": JUMP_BEFORE_MS,
        "retention_days": rt.settings.retention_days,
        "counts": {k: sum(1 for m in markers if m.kind == k) for k in MARKER_KINDS},
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


def accepts_gzip(header: str) -> bool:
    """Whether Accept-Encoding allows gzip (an explicit q=0 refuses it)."""
    for part in header.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.replace(" ", "").removeprefix("q=")
            try:
                return not params or float(q) > 0
            except ValueError:
                return True
    return False


def _load(rt: Any, key: str, want_gzip: bool) -> bytes:
    try:
        body = replays.load_events(rt.blobs, key)
    except FileNotFoundError:  # purged between the row read and now
        raise NotFound("this replay has just expired") from None
    return gzip.compress(body, GZIP_LEVEL, mtime=0) if want_gzip else body


@get("/sessions/{session_id:str}/events")
async def replay_events(
    request: Request[Any, Any, Any], session_id: FromPath[str]
) -> Response[bytes]:
    """The replay's rrweb events as a JSON array (gzip when the browser accepts it)."""
    rt = runtime(request)
    sid = _session_id(session_id)
    session = await rt.reads.run(replays.get_session, sid)
    key = session.replay_key
    if key is None or session.expired:
        raise NotFound("this session has no replay to play")
    # The artifact under a key never changes (a rebuild writes a new key), so it makes a
    # strong validator: revisiting a replay costs a 304.
    etag = '"' + hashlib.sha256(key.encode()).hexdigest()[:24] + '"'
    headers = {
        **SECURITY_HEADERS,
        "cache-control": "private, no-cache",
        "etag": etag,
        "vary": "Accept-Encoding, Cookie",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    want_gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
    body = await in_pool(rt, partial(_load, rt, key, want_gzip))
    if want_gzip:
        headers["content-encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


HANDLERS = [session_list, replay_page, replay_state, replay_events]
