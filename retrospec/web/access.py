"""Who may see the dashboard: the login guard, CSRF checks, session cookies, error pages."""

from __future__ import annotations

import logging
import secrets
from typing import Any, cast
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ExceptionHandlersMap

from retrospec import auth
from retrospec.errors import RetrospecError
from retrospec.runtime import Runtime
from retrospec.web.render import SECURITY_HEADERS, page

log = logging.getLogger(__name__)

SESSION_COOKIE = "retrospec_session"
FORM_COOKIE = "retrospec_form"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_PURPOSE = "login-session"
_FORM_PURPOSE = "form-nonce"


class LoginRequired(Exception):
    """No valid login cookie: the handler answers with a redirect to /login."""


class CsrfRejected(Exception):
    """A state-changing request without the right CSRF token."""


def runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    """The server's Runtime."""
    rt: Runtime = connection.app.state.rt
    return rt


def client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The peer address (uvicorn runs without proxy headers, so this is not spoofable)."""
    return connection.client.host if connection.client else None


async def current_login(connection: ASGIConnection[Any, Any, Any, Any]) -> auth.Login | None:
    """The login behind the session cookie, if the signature and the stored session agree."""
    rt = runtime(connection)
    token = auth.unsign(rt.secret, _SESSION_PURPOSE, connection.cookies.get(SESSION_COOKIE))
    if token is None:
        return None  # forged or absent: no database lookup at all
    return await rt.reads.run(auth.load_session, token)


def session_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The plain session token from a correctly signed cookie."""
    return auth.unsign(
        runtime(connection).secret, _SESSION_PURPOSE, connection.cookies.get(SESSION_COOKIE)
    )


async def submitted_csrf(request: Request[Any, Any, Any]) -> str | None:
    """The CSRF token of a request: the htmx header, else the hidden form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def login_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Every dashboard route: require a login, and a CSRF token on anything but GET/HEAD."""
    if handler.opt.get("public"):
        return
    login = await current_login(connection)
    if login is None:
        raise LoginRequired
    connection.state.login = login
    request = cast("Request[Any, Any, Any]", connection)
    if request.method not in SAFE_METHODS:
        given = await submitted_csrf(request)
        if not auth.tokens_match(login.csrf_token, given):
            raise CsrfRejected


# Characters a Location header may carry as they are; anything else (non-ASCII) is
# percent-encoded, so the redirect is always a valid header.
_URL_SAFE = "/?&=#%:@!$'()*+,;~-._"


def safe_next(value: str | None) -> str:
    """A post-login destination on this server only (no //host or scheme tricks).

    Control characters (CR/LF would split the Location header), backslashes and overlong
    values fall back to "/"; non-ASCII is percent-encoded.
    """
    if not value or len(value) > 2000 or not value.startswith("/"):
        return "/"
    if value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        return "/"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc:
        return "/"
    return quote(value, safe=_URL_SAFE)


def login_url(next_path: str) -> str:
    """/login, remembering where the user wanted to go."""
    target = safe_next(next_path)
    return "/login" if target == "/" else f"/login?next={quote(target, safe='/')}"


def redirect(location: str, *, status_code: int = 303) -> Response[str]:
    """A plain redirect carrying the dashboard's security headers."""
    return Response(
        "",
        status_code=status_code,
        headers={**SECURITY_HEADERS, "location": location},
        media_type="text/plain",
    )


def handle_login_required(request: Request[Any, Any, Any], _: Exception) -> Response[str]:
    """Redirect to /login; htmx requests get HX-Redirect (a 303 would be swapped in place)."""
    if request.headers.get("hx-request") == "true":
        current = request.headers.get("hx-current-url", "/")
        try:
            parts = urlsplit(current)
            target = login_url(parts.path + (f"?{parts.query}" if parts.query else ""))
        except ValueError:  # a header the client wrote: never worth a 500
            target = "/login"
        return Response(
            "Your login has expired.",
            status_code=401,
            headers={**SECURITY_HEADERS, "hx-redirect": target},
            media_type="text/plain",
        )
    if request.method in SAFE_METHODS:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(login_url(path))
    return redirect("/login")


def error_response(
    request: Request[Any, Any, Any], status_code: int, title: str, message: str
) -> Response[str]:
    """An error as a page, or as short text for htmx (dashboard.js shows it as a toast)."""
    if request.headers.get("hx-request") == "true":
        return Response(
            message, status_code=status_code, headers=SECURITY_HEADERS, media_type="text/plain"
        )
    return page(
        request,
        "error.html",
        {"title": title, "message": message, "status": status_code},
        status_code=status_code,
    )


def handle_csrf(request: Request[Any, Any, Any], _: Exception) -> Response[str]:
    """403: the form's security token is missing or stale."""
    return error_response(
        request,
        403,
        "This form has expired",
        "The request was missing its security token (or it was from an older login). "
        "Reload the page and try again.",
    )


def handle_error(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    """RetrospecError -> its HTTP status with its message."""
    assert isinstance(exc, RetrospecError)
    titles = {404: "Not found", 400: "That did not work", 403: "Not allowed", 409: "Already exists"}
    response = error_response(
        request, exc.http_status, titles.get(exc.http_status, "Something went wrong"), exc.message
    )
    response.headers.update(exc.headers)
    return response


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    """Anything else: log it, show a calm 500 without internals."""
    from litestar.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status == 404:
            return error_response(request, 404, "Not found", "There is nothing at this address.")
        return error_response(request, status, "That did not work", str(exc.detail))
    log.exception("dashboard error on %s %s", request.method, request.url.path)
    return error_response(
        request, 500, "Something went wrong", "The server hit an error; the log has the details."
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LoginRequired: handle_login_required,
    CsrfRejected: handle_csrf,
    RetrospecError: handle_error,
    Exception: handle_unexpected,
}


# --- cookies -----------------------------------------------------------------------------------


def set_session_cookie(response: Response[Any], rt: Runtime, token: str) -> None:
    """The login cookie: signed, HttpOnly, SameSite=Lax, Secure when configured."""
    response.set_cookie(
        SESSION_COOKIE,
        auth.sign(rt.secret, _SESSION_PURPOSE, token),
        max_age=int(rt.settings.login_session_hours * 3600),
        path="/",
        httponly=True,
        samesite="lax",
        secure=rt.settings.cookie_secure,
    )


def clear_session_cookie(response: Response[Any], rt: Runtime) -> None:
    """Expire the login cookie."""
    response.set_cookie(
        SESSION_COOKIE,
        "",
        max_age=0,
        path="/",
        httponly=True,
        samesite="lax",
        secure=rt.settings.cookie_secure,
    )


def form_nonce(request: Request[Any, Any, Any]) -> tuple[str, bool]:
    """The pre-login form nonce from its signed cookie, or a new one (second item True)."""
    rt = runtime(request)
    nonce = auth.unsign(rt.secret, _FORM_PURPOSE, request.cookies.get(FORM_COOKIE))
    if nonce:
        return nonce, False
    return secrets.token_urlsafe(16), True


def set_form_cookie(response: Response[Any], rt: Runtime, nonce: str) -> None:
    """Bind the login/setup forms' CSRF token to this browser."""
    response.set_cookie(
        FORM_COOKIE,
        auth.sign(rt.secret, _FORM_PURPOSE, nonce),
        max_age=12 * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=rt.settings.cookie_secure,
    )


def form_token_ok(request: Request[Any, Any, Any], given: str | None) -> bool:
    """Whether a pre-login form carried the token matching this browser's nonce cookie."""
    rt = runtime(request)
    nonce = auth.unsign(rt.secret, _FORM_PURPOSE, request.cookies.get(FORM_COOKIE))
    if not nonce:
        return False
    return auth.tokens_match(auth.form_token(rt.secret, nonce), given)
