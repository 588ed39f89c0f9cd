"""The dashboard's routes: everything behind the login guard (app.py calls routes(rt))."""

from __future__ import annotations

from typing import Any

from litestar import Router

from retrospec import auth
from retrospec.runtime import Runtime
from retrospec.storage.db import DirectWriter, connect
from retrospec.web import auth_pages, issue_pages, session_pages, site_pages
from retrospec.web.access import EXCEPTION_HANDLERS, login_guard


def _setup_link(rt: Runtime) -> str | None:
    conn = connect(rt.settings.db_path)
    try:
        token = DirectWriter(conn).call(auth.issue_setup_token)
    finally:
        conn.close()
    return None if token is None else f"{rt.settings.base_url}/setup?token={token}"


def routes(rt: Runtime) -> list[Any]:
    """The dashboard router; on a fresh install also prints the one-time setup link."""
    rt.extras["login_throttle"] = auth.LoginThrottle()
    link = _setup_link(rt)
    if link is not None:
        rt.extras["setup_url"] = link
        rt.extras.setdefault("startup_lines", []).append(
            f"No dashboard account yet. Create the first one (link works once): {link}"
        )
    router = Router(
        path="/",
        route_handlers=[
            *auth_pages.HANDLERS,
            *issue_pages.HANDLERS,
            *session_pages.HANDLERS,
            *site_pages.HANDLERS,
        ],
        # Guard on the router: a new page is behind login unless it opts out with
        # opt={"public": True}.
        guards=[login_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    return [router]
