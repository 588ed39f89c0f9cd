"""`retrospec users add USERNAME [--password-stdin]`: dashboard accounts from a terminal."""

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
    from retrospec.cli.common import load, with_db

    name = auth.validate_username(username)
    password = _read_password(password_stdin)
    auth.validate_password(password)
    password_hash = auth.hash_password(password)
    loaded = load()

    def write(conn: Any) -> auth.User:
        return auth.create_user(conn, name, password_hash)

    user = with_db(loaded, write, write=True)
    console.success(f"created user {user.username}; sign in at {loaded.settings.base_url}/login")


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
