"""The dashboard's routes: everything behind the login guard (app.py calls routes())."""

from __future__ import annotations

from typing import Any

from litestar import Router

from retrospec.web import (
    alert_pages,
    auth_pages,
    clip_pages,
    issue_pages,
    session_pages,
    site_pages,
    user_pages,
)
from retrospec.web.access import EXCEPTION_HANDLERS, login_guard


def routes() -> list[Any]:
    """The dashboard router."""
    router = Router(
        path="/",
        route_handlers=[
            *auth_pages.HANDLERS,
            *issue_pages.HANDLERS,
            *clip_pages.HANDLERS,
            *session_pages.HANDLERS,
            *site_pages.HANDLERS,
            *alert_pages.HANDLERS,
            *user_pages.HANDLERS,
        ],
        # Guard on the router: a new page is behind login unless it opts out with
        # opt={"public": True}.
        guards=[login_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    return [router]
