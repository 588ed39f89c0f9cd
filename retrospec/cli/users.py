"""`retrospec users add|list|remove|passwd|logout-all`: dashboard accounts from a terminal."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from retrospec import auth, console
from retrospec.errors import UsageError

users_app = typer.Typer(help="Dashboard accounts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `users` to the root CLI."""
    app.add_typer(users_app, name="users")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        # Only the line ending goes: leading or trailing spaces may be part of the password.
        piped = line.rstrip("\r\n")
        if not piped:
            raise UsageError('no password on stdin (pipe it in: echo "$PW" | ... --password-stdin)')
        return piped
    if not sys.stdin.isatty():
        raise UsageError("stdin is not a terminal; use --password-stdin to pipe the password")
    # typer's prompt reads without echo (getpass) and asks twice.
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ @ + -).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (one line).")
    ] = False,
) -> None:
    """Create a dashboard account (asks for the password twice, without echo)."""
    from retrospec.cli.common import base_url, load, with_db

    name = auth.validate_username(username)
    password = _read_password(password_stdin)
    auth.validate_password(password)
    password_hash = auth.hash_password(password)
    loaded = load()

    def write(conn: Any) -> auth.User:
        return auth.create_user(conn, name, password_hash)

    user = with_db(loaded, write, write=True)
    console.success(f"created user {user.username}; sign in at {base_url(loaded.settings)}/login")


UsernameArg = Annotated[str, typer.Argument(help="Login name, as `retrospec users list` shows.")]


@users_app.command("remove")
def users_remove(username: UsernameArg) -> None:
    """Delete an account and end every login it has."""
    from retrospec.cli.common import load, with_db

    def write(conn: Any) -> tuple[str, int]:
        user = auth.get_user(conn, username)
        return user.username, auth.remove_user(conn, user.id)

    name, ended = with_db(load(), write, write=True)
    console.success(f"removed user {name} ({ended} login{'s' if ended != 1 else ''} ended)")


@users_app.command("passwd")
def users_passwd(
    username: UsernameArg,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (one line).")
    ] = False,
) -> None:
    """Set a new password (asks twice, without echo); every login of the user ends."""
    from retrospec.cli.common import load, with_db

    loaded = load()
    user = with_db(loaded, lambda c: auth.get_user(c, username))
    password = _read_password(password_stdin)
    auth.validate_password(password)
    password_hash = auth.hash_password(password)
    ended = with_db(loaded, lambda c: auth.change_password(c, user.id, password_hash), write=True)
    console.success(
        f"changed the password of {user.username}; {ended} login{'s' if ended != 1 else ''} ended"
    )


@users_app.command("logout-all")
def users_logout_all(username: UsernameArg) -> None:
    """End every login of a user (every browser signs in again)."""
    from retrospec.cli.common import load, with_db

    def write(conn: Any) -> tuple[str, int]:
        user = auth.get_user(conn, username)
        return user.username, auth.end_user_sessions(conn, user.id)

    name, ended = with_db(load(), write, write=True)
    console.success(f"ended {ended} login{'s' if ended != 1 else ''} of {name}")


@users_app.command("list")
def users_list(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dashboard accounts."""
    from retrospec.cli.common import load, with_db
    from retrospec.clock import iso

    users = with_db(load(), auth.list_users)
    if json_out:
        console.print_json(
            [
                {
                    "id": u.id,
                    "username": u.username,
                    "created_at": iso(u.created_at),
                    "last_login_at": iso(u.last_login_at),
                }
                for u in users
            ]
        )
        return
    console.print_table(
        ["id", "username", "created", "last sign-in"],
        [
            (u.id, u.username, (iso(u.created_at) or "")[:16], (iso(u.last_login_at) or "")[:16])
            for u in users
        ],
        empty="no accounts yet; add one with `retrospec users add NAME`",
    )
