"""/login, /logout and /setup (the first account, from the link `retrospec serve` prints)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from litestar import Request, Response, get, post

from retrospec import auth
from retrospec.errors import BadRequest, Conflict, Forbidden
from retrospec.ingest.guards import retry_after_header
from retrospec.web.access import (
    clear_session_cookie,
    client_ip,
    current_login,
    form_nonce,
    form_token_ok,
    redirect,
    runtime,
    safe_next,
    session_token,
    set_form_cookie,
    set_session_cookie,
)
from retrospec.web.offload import in_pool
from retrospec.web.render import page

log = logging.getLogger(__name__)
PUBLIC = {"public": True}


def _field(form: Any, name: str) -> str:
    """A text form field ('' when missing, or a file where text was expected)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def throttle(request: Request[Any, Any, Any]) -> auth.LoginThrottle:
    """The server's login throttle."""
    return runtime(request).login_throttle


def _login_page(
    request: Request[Any, Any, Any],
    *,
    error: str = "",
    username: str = "",
    next_path: str = "/",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    no_users: bool = False,
) -> Response[str]:
    rt = runtime(request)
    nonce, fresh = form_nonce(request)
    response = page(
        request,
        "login.html",
        {
            "form_token": auth.form_token(rt.secret, nonce),
            "error": error,
            "username": username,
            "next": next_path,
            "no_users": no_users,
        },
        status_code=status_code,
        headers=headers,
    )
    if fresh:
        set_form_cookie(response, rt, nonce)
    return response


async def _no_users(request: Request[Any, Any, Any]) -> bool:
    return await runtime(request).reads.run(auth.count_users) == 0


@get("/login", opt=PUBLIC, name="login")
async def login_form(request: Request[Any, Any, Any]) -> Response[str]:
    """The sign-in form (straight through when already signed in)."""
    next_path = safe_next(request.query_params.get("next"))
    if await current_login(request) is not None:
        return redirect(next_path)
    return _login_page(request, next_path=next_path, no_users=await _no_users(request))


@post("/login", opt=PUBLIC, status_code=200)
async def login_submit(request: Request[Any, Any, Any]) -> Response[str]:
    """Check the password (throttled), start a session, set the cookie, go where asked."""
    rt = runtime(request)
    form = await request.form()
    username = _field(form, "username").strip()
    password = _field(form, "password")
    next_path = safe_next(_field(form, "next") or "/")
    if not form_token_ok(request, _field(form, "csrf_token")):
        return _login_page(
            request,
            error="The sign-in form expired. Please try again.",
            username=username,
            next_path=next_path,
            status_code=403,
        )
    if not username or not password:
        return _login_page(
            request,
            error="Enter your username and password.",
            username=username,
            next_path=next_path,
            status_code=400,
        )
    limiter = throttle(request)
    ip = client_ip(request)
    wait = limiter.retry_after(username, ip)
    if wait > 0:
        # Refused before the password is even checked, so guessing gains nothing while locked.
        return _login_page(
            request,
            error=f"Too many failed attempts. Try again in {retry_after_header(wait)} seconds.",
            username=username,
            next_path=next_path,
            status_code=429,
            headers={"retry-after": retry_after_header(wait)},
        )
    found = await rt.reads.run(auth.get_credentials, username)
    stored = found[2] if found else None
    ok = await in_pool(rt, partial(auth.verify_password, stored, password))
    if not ok or found is None:
        limiter.failure(username, ip)
        log.warning("failed dashboard login for %r from %s", username[:64], ip)
        return _login_page(
            request,
            error="Wrong username or password.",
            username=username,
            next_path=next_path,
            status_code=401,
        )
    limiter.success(username, ip)
    user_id, _, stored_hash = found
    new_hash = None
    if auth.needs_rehash(stored_hash):
        new_hash = await in_pool(rt, partial(auth.hash_password, password))

    def write(conn: Any) -> tuple[str, auth.Login]:
        if new_hash:
            auth.set_password_hash(conn, user_id, new_hash)
        return auth.start_session(conn, user_id, rt.settings.login_session_hours)

    token, _login = await rt.writer.run(write)
    response = redirect(next_path)
    set_session_cookie(response, rt, token)
    return response


@post("/logout", status_code=200)
async def logout(request: Request[Any, Any, Any]) -> Response[str]:
    """End this browser's session (the guard already checked login and CSRF)."""
    rt = runtime(request)
    token = session_token(request)
    if token:
        await rt.writer.run(lambda c: auth.end_session(c, token))
    response = redirect("/login")
    if request.headers.get("hx-request") == "true":
        response.headers["hx-redirect"] = "/login"
    clear_session_cookie(response, rt)
    return response


def _setup_page(
    request: Request[Any, Any, Any],
    token: str,
    *,
    error: str = "",
    username: str = "",
    status_code: int = 200,
) -> Response[str]:
    rt = runtime(request)
    nonce, fresh = form_nonce(request)
    response = page(
        request,
        "setup.html",
        {
            "form_token": auth.form_token(rt.secret, nonce),
            "token": token,
            "error": error,
            "username": username,
            "min_password": auth.MIN_PASSWORD,
        },
        status_code=status_code,
    )
    if fresh:
        set_form_cookie(response, rt, nonce)
    return response


def _setup_used(request: Request[Any, Any, Any]) -> Response[str]:
    return page(
        request,
        "error.html",
        {
            "title": "This setup link no longer works",
            "message": "It has been used, or the server was restarted (each start prints a new "
            "link while no account exists). Sign in, restart `retrospec serve` for a fresh "
            "link, or create an account with `retrospec users add NAME`.",
            "status": 403,
            "action": ("/login", "Go to sign in"),
        },
        status_code=403,
    )


@get("/setup", opt=PUBLIC)
async def setup_form(request: Request[Any, Any, Any]) -> Response[str]:
    """Create-the-first-account form, only with the live setup token."""
    rt = runtime(request)
    token = request.query_params.get("token") or ""
    valid = await rt.reads.run(auth.setup_token_valid, token)
    if not valid:
        return _setup_used(request)
    return _setup_page(request, token)


@post("/setup", opt=PUBLIC, status_code=200)
async def setup_submit(request: Request[Any, Any, Any]) -> Response[str]:
    """Create the first account, burn the token and sign the new user in."""
    rt = runtime(request)
    form = await request.form()
    token = _field(form, "token")
    username = _field(form, "username").strip()
    password = _field(form, "password")
    confirm = _field(form, "password_confirm")
    if not form_token_ok(request, _field(form, "csrf_token")):
        return _setup_page(
            request, token, error="The form expired. Please try again.", status_code=403
        )
    if not await rt.reads.run(auth.setup_token_valid, token):
        return _setup_used(request)
    try:
        username = auth.validate_username(username)
        auth.validate_password(password)
        if password != confirm:
            raise BadRequest("the two passwords differ")
    except BadRequest as exc:
        return _setup_page(request, token, error=exc.message, username=username, status_code=400)
    password_hash = await in_pool(rt, partial(auth.hash_password, password))

    def write(conn: Any) -> tuple[str, auth.Login]:
        user = auth.create_first_user(conn, token, username, password_hash)
        return auth.start_session(conn, user.id, rt.settings.login_session_hours)

    try:
        session, _login = await rt.writer.run(write)
    except (Forbidden, Conflict):
        return _setup_used(request)
    log.warning("first dashboard account %r created through the setup link", username)
    response = redirect("/")
    set_session_cookie(response, rt, session)
    return response


HANDLERS = [login_form, login_submit, logout, setup_form, setup_submit]
