"""/users: the dashboard's accounts; change your password, end a user's logins, remove a user.

Changing a password ends every other login of that account (this browser stays signed in);
"sign out everywhere" ends every login of a user; a user cannot remove the account they are
signed in with (the terminal can: `retrospec users remove`).
"""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from retrospec import auth
from retrospec.errors import BadRequest
from retrospec.web.access import clear_session_cookie, redirect, runtime, session_token
from retrospec.web.offload import in_pool
from retrospec.web.render import page


def _form_value(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _users(conn: sqlite3.Connection) -> tuple[list[auth.User], dict[int, int]]:
    return auth.list_users(conn), auth.login_counts(conn)


async def _page(
    request: Request[Any, Any, Any], *, notice: str = "", error: str = "", status_code: int = 200
) -> Response[str]:
    users, logins = await runtime(request).reads.run(_users)
    context = {
        "section": "users",
        "users": users,
        "logins": logins,
        "notice": notice,
        "error": error,
        "min_password": auth.MIN_PASSWORD,
    }
    return page(request, "users.html", context, status_code=status_code)


@get("/users", name="users")
async def user_list(request: Request[Any, Any, Any]) -> Response[str]:
    """Every account with its live logins."""
    return await _page(request)


@post("/users/password", status_code=200)
async def change_own_password(request: Request[Any, Any, Any]) -> Response[str]:
    """Change the signed-in user's password (the current one first); other logins end."""
    rt = runtime(request)
    login: auth.Login = request.state.login
    form = await request.form()
    current = _form_value(form, "current_password")
    new = _form_value(form, "password")
    try:
        auth.validate_password(new)
        if new != _form_value(form, "password_confirm"):
            raise BadRequest("the two new passwords differ")
    except BadRequest as exc:
        return await _page(request, error=exc.message, status_code=400)
    found = await rt.reads.run(auth.get_credentials, login.username)
    ok = await in_pool(rt, partial(auth.verify_password, found[2] if found else None, current))
    if not ok:
        return await _page(request, error="The current password is wrong.", status_code=403)
    new_hash = await in_pool(rt, partial(auth.hash_password, new))
    token = session_token(request)
    ended = await rt.writer.run(
        lambda c: auth.change_password(c, login.user_id, new_hash, keep_token=token)
    )
    return await _page(
        request, notice=f"Password changed; {ended} other login{'s' if ended != 1 else ''} ended."
    )


@post("/users/{user_id:int}/logout-all", status_code=200)
async def logout_all(request: Request[Any, Any, Any], user_id: FromPath[int]) -> Response[str]:
    """End every login of a user (this browser's too, when it is your own account)."""
    rt = runtime(request)
    login: auth.Login = request.state.login

    def write(conn: sqlite3.Connection) -> tuple[str, int]:
        user = auth.get_user_by_id(conn, user_id)
        return user.username, auth.end_user_sessions(conn, user.id)

    name, ended = await rt.writer.run(write)
    if user_id == login.user_id:
        response = redirect("/login")
        clear_session_cookie(response, rt)
        return response
    return await _page(request, notice=f"Ended {ended} login{'s' if ended != 1 else ''} of {name}.")


@post("/users/{user_id:int}/remove", status_code=200)
async def remove(request: Request[Any, Any, Any], user_id: FromPath[int]) -> Response[str]:
    """Delete another account (and its logins)."""
    rt = runtime(request)
    login: auth.Login = request.state.login
    if user_id == login.user_id:
        return await _page(
            request,
            error="You cannot remove the account you are signed in with "
            "(use `retrospec users remove` from a terminal).",
            status_code=400,
        )

    def write(conn: sqlite3.Connection) -> str:
        user = auth.get_user_by_id(conn, user_id)
        auth.remove_user(conn, user.id)
        return user.username

    name = await rt.writer.run(write)
    return await _page(request, notice=f"Removed {name}.")


HANDLERS = [user_list, change_own_password, logout_all, remove]
