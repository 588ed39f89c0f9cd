"""The JSON API under /api/v1: issues, sessions and releases for scripts, with Bearer tokens.

Only `Authorization: Bearer <token>` authorises it (never the dashboard's cookie), and a token
never opens the dashboard (its guard reads only the cookie). 401 without a live token, 403 for a
read token on a write route. Documents are the CLI's: GET /issues is `issues list --json`,
GET /issues/{id} is `issues show --json`, GET /sessions is `sessions list --json`, plus a
`next_cursor` to page with. Every error is JSON {"error": ...}; the OpenAPI document at
/api/v1/openapi.json describes exactly this (web/api_schema.py; a fuzz test checks them).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.types import ExceptionHandlersMap

from retrospec import tokens
from retrospec.clock import iso, now_ms
from retrospec.errors import BadRequest, Conflict, Forbidden, NotFound, RetrospecError, Unauthorized
from retrospec.issues import queries as issues
from retrospec.issues.evidence import get_evidence
from retrospec.issues.releases import ReleaseRow, list_releases
from retrospec.issues.reports import evidence_json, issue_json
from retrospec.replay.queries import list_sessions
from retrospec.replay.reports import session_json
from retrospec.sites import get_site, list_sites
from retrospec.web import api_schema
from retrospec.web.access import runtime

log = logging.getLogger(__name__)

API_PATH = "/api/v1"
MAX_LIMIT = 1000
MAX_ID = 2**63 - 1
MAX_CURSOR = 400
_CURSOR_RE = re.compile(r"\A[A-Za-z0-9_-]*\Z")
HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
WRITE = {"scope": "write"}


def _json(doc: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        doc,
        status_code=status_code,
        media_type="application/json",
        headers={**HEADERS, **(headers or {})},
    )


# --- auth --------------------------------------------------------------------------------------


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    value = connection.headers.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def token_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Every API route but the OpenAPI document: a live token, with write scope where needed."""
    if handler.opt.get("public"):
        return
    token = bearer(connection)
    if token is None:
        raise Unauthorized(
            "send a token as `Authorization: Bearer <token>` (retrospec tokens create)"
        )
    rt = runtime(connection)
    found = await rt.reads.run(tokens.find_token, token)
    if found is None:
        raise Unauthorized("unknown or revoked token")
    if handler.opt.get("scope") == "write" and not found.can_write:
        raise Forbidden(
            f"token {found.name!r} is read-only; this needs a write token "
            "(retrospec tokens create NAME --scope write)"
        )
    connection.state.api_token = found
    now = now_ms()
    if tokens.needs_touch(found, now):
        await rt.writer.run(lambda c: tokens.touch_token(c, found.id, now))


# --- parameters --------------------------------------------------------------------------------


def _only(request: Request[Any, Any, Any], *allowed: str) -> None:
    """A typo in a parameter name is an error, not a silently ignored filter."""
    params = request.query_params
    for name in params:
        if name not in allowed:
            shown = name if len(name) <= 40 else name[:40] + "…"
            takes = f"this takes {', '.join(allowed)}" if allowed else "this takes none"
            raise BadRequest(f"unknown parameter {shown!r}; {takes}")
        if len(params.getall(name)) > 1:
            raise BadRequest(f"give {name} once")


def _limit(value: str | None, default: int = 50) -> int:
    if value is None:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return limit


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false")


def encode_cursor(*values: Any) -> str:
    """An opaque cursor: where the next page starts."""
    raw = json.dumps(list(values), separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(value: str | None, shape: tuple[type, ...]) -> tuple[Any, ...] | None:
    """The cursor's values if it has this shape, else BadRequest (None when absent)."""
    if value is None or value == "":
        return None
    if len(value) > MAX_CURSOR or not _CURSOR_RE.match(value):
        raise BadRequest("cursor is not one this API returned")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        items = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this API returned") from None
    if (
        not isinstance(items, list)
        or len(items) != len(shape)
        or not all(type(v) is t for v, t in zip(items, shape, strict=True))
        or any(type(v) is int and not 0 <= v <= MAX_ID for v in items)
        or any(type(v) is str and len(v) > 200 for v in items)
    ):
        raise BadRequest("cursor is not one this API returned")
    return tuple(items)


def _issue_id(value: str) -> int:
    # A path segment, validated here so every bad id is a JSON 404 (not a routing miss).
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise NotFound(f"no issue {value!r}")
    return int(value)


def _site(value: str | None) -> str | None:
    return value if value else None


# --- routes ------------------------------------------------------------------------------------


@get("/openapi.json", opt={"public": True}, include_in_schema=False)
async def openapi_document(request: Request[Any, Any, Any]) -> Response[Any]:
    """The OpenAPI 3.1 description of this API (no token needed)."""
    return _json(api_schema.document())


@get("/issues", include_in_schema=False)
async def api_issues(
    request: Request[Any, Any, Any],
    site: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    limit: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[Any]:
    """`issues list --json`, newest activity first, with next_cursor."""
    _only(request, "site", "status", "limit", "cursor")
    rt = runtime(request)
    wanted = "open" if status is None else status
    if wanted not in issues.STATUSES:
        raise BadRequest(f"status must be one of {', '.join(issues.STATUSES)}")
    size = _limit(limit)
    before = decode_cursor(cursor, (int, int))
    items, total = await rt.reads.run(
        lambda c: issues.list_issues(
            c,
            site=_site(site),
            status=wanted,
            limit=size,
            before=before,
        )
    )
    base = rt.settings.base_url
    last = items[-1] if len(items) == size else None
    return _json(
        {
            "schema_version": 1,
            "status": wanted,
            "site": _site(site),
            "total": total,
            "issues": [issue_json(i, base) for i in items],
            "next_cursor": None if last is None else encode_cursor(last.last_seen_at, last.id),
        }
    )


@get("/issues/{issue_id:str}", include_in_schema=False)
async def api_issue(request: Request[Any, Any, Any], issue_id: FromPath[str]) -> Response[Any]:
    """`issues show --json`."""
    _only(request)
    rt = runtime(request)
    ev = await rt.reads.run(get_evidence, _issue_id(issue_id))
    return _json(evidence_json(ev, rt.settings.base_url))


async def _change(request: Request[Any, Any, Any], issue_id: str, action: str) -> Response[Any]:
    _only(request)
    rt = runtime(request)
    cid = _issue_id(issue_id)
    actor = f"token:{request.state.api_token.name}"
    try:
        await rt.writer.run(lambda c: issues.change_status(c, cid, action, actor))
    except BadRequest as exc:  # a valid request the issue's state does not allow
        raise Conflict(exc.message) from None
    issue = await rt.reads.run(issues.get_issue, cid)
    return _json(issue_json(issue, rt.settings.base_url))


@post("/issues/{issue_id:str}/resolve", opt=WRITE, status_code=200, include_in_schema=False)
async def api_resolve(request: Request[Any, Any, Any], issue_id: FromPath[str]) -> Response[Any]:
    """Resolve an issue (write scope)."""
    return await _change(request, issue_id, "resolve")


@post("/issues/{issue_id:str}/ignore", opt=WRITE, status_code=200, include_in_schema=False)
async def api_ignore(request: Request[Any, Any, Any], issue_id: FromPath[str]) -> Response[Any]:
    """Ignore an issue (write scope)."""
    return await _change(request, issue_id, "ignore")


@post("/issues/{issue_id:str}/reopen", opt=WRITE, status_code=200, include_in_schema=False)
async def api_reopen(request: Request[Any, Any, Any], issue_id: FromPath[str]) -> Response[Any]:
    """Reopen an issue (write scope)."""
    return await _change(request, issue_id, "reopen")


@get("/sessions", include_in_schema=False)
async def api_sessions(
    request: Request[Any, Any, Any],
    site: FromQuery[str | None] = None,
    with_failures: FromQuery[str | None] = None,
    limit: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[Any]:
    """`sessions list --json`, newest activity first, with next_cursor."""
    _only(request, "site", "with_failures", "limit", "cursor")
    rt = runtime(request)
    failing = _flag("with_failures", with_failures)
    size = _limit(limit)
    before = decode_cursor(cursor, (int, str))
    items, total = await rt.reads.run(
        lambda c: list_sessions(
            c,
            site=_site(site),
            with_failures=failing,
            limit=size,
            before=before,
        )
    )
    last = items[-1] if len(items) == size else None
    return _json(
        {
            "schema_version": 1,
            "site": _site(site),
            "with_failures": failing,
            "total": total,
            "sessions": [session_json(s, rt.settings.base_url) for s in items],
            "next_cursor": None if last is None else encode_cursor(last.last_seen_at, last.id),
        }
    )


def _seen_releases(conn: Any, site: str | None) -> list[ReleaseRow]:
    """Releases sessions or failures came with (not maps-only ones), most recently seen first."""
    chosen = [get_site(conn, site)] if site else list_sites(conn)
    rows = [r for s in chosen for r in list_releases(conn, s.id, s.name)]
    seen = [r for r in rows if r.first_seen_at is not None]
    seen.sort(key=lambda r: (-(r.last_seen_at or 0), r.site_name, r.release))
    return seen


def release_json(r: ReleaseRow) -> dict[str, Any]:
    """One release as GET /api/v1/releases returns it."""
    return {
        "release": r.release,
        "site": {"id": r.site_id, "name": r.site_name},
        "first_seen": iso(r.first_seen_at),
        "last_seen": iso(r.last_seen_at),
        "sessions": r.sessions,
        "failures": r.failures,
        "new_issues": r.new_issues,
        "regressions": r.regressions,
        "has_maps": r.maps > 0,
    }


@get("/releases", include_in_schema=False)
async def api_releases(
    request: Request[Any, Any, Any],
    site: FromQuery[str | None] = None,
    limit: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[Any]:
    """Releases per site, most recently seen first, with next_cursor."""
    _only(request, "site", "limit", "cursor")
    rt = runtime(request)
    size = _limit(limit)
    start = decode_cursor(cursor, (int,))
    offset = int(start[0]) if start else 0
    found = await rt.reads.run(_seen_releases, _site(site))
    page = found[offset : offset + size]
    more = offset + size < len(found)
    return _json(
        {
            "schema_version": 1,
            "site": _site(site),
            "total": len(found),
            "releases": [release_json(r) for r in page],
            "next_cursor": encode_cursor(offset + size) if more else None,
        }
    )


# --- errors ------------------------------------------------------------------------------------


def _error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, RetrospecError):
        headers = dict(exc.headers)
        if isinstance(exc, Unauthorized):
            headers["www-authenticate"] = 'Bearer realm="retrospec"'
        return _json({"error": exc.message}, exc.http_status, headers)
    if isinstance(exc, HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "bad request"
        return _json({"error": detail}, exc.status_code, dict(exc.headers or {}))
    log.exception("API error on %s %s", request.method, request.url.path)
    return _json({"error": "internal error; the server log has the details"}, 500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {Exception: _error}


def routes() -> list[Any]:
    """The API router (app.py mounts it beside the dashboard)."""
    return [
        Router(
            path=API_PATH,
            route_handlers=[
                openapi_document,
                api_issues,
                api_issue,
                api_resolve,
                api_ignore,
                api_reopen,
                api_sessions,
                api_releases,
            ],
            guards=[token_guard],
            exception_handlers=EXCEPTION_HANDLERS,
            include_in_schema=False,
        )
    ]
