"""`retrospec tokens ...`: personal tokens for the JSON API (shown once, stored hashed)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from retrospec import console
from retrospec.cli.common import JsonOpt, ago, fit_table, load, require_db, with_db
from retrospec.clock import iso, now_ms

if TYPE_CHECKING:
    from retrospec.tokens import ApiToken

tokens_app = typer.Typer(help="Tokens for the JSON API (/api/v1).", no_args_is_help=True)


class Scope(StrEnum):
    """What a token may do."""

    read = "read"
    write = "write"


def register(app: typer.Typer) -> None:
    """Add `tokens` to the root CLI."""
    app.add_typer(tokens_app, name="tokens")


def token_json(t: ApiToken) -> dict[str, Any]:
    """One token in `tokens list --json` (never the token itself)."""
    return {
        "id": t.id,
        "name": t.name,
        "scope": t.scope,
        "prefix": t.prefix,
        "created_at": iso(t.created_at),
        "last_used_at": iso(t.last_used_at),
        "revoked_at": iso(t.revoked_at),
    }


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. ci or deploy-bot.")],
    scope: Annotated[
        Scope, typer.Option("--scope", help="read, or write (may resolve, ignore, reopen).")
    ] = Scope.read,
    json_out: JsonOpt = False,
) -> None:
    """Create a token; it is printed once (send it as `Authorization: Bearer TOKEN`)."""
    from retrospec.tokens import create_token

    loaded = load()
    record, token = with_db(loaded, lambda c: create_token(c, name, scope.value), write=True)
    if json_out:
        console.print_json({**token_json(record), "token": token})
        return
    console.success(f"created {record.scope} token {record.id} ({record.name}); copy it now:")
    console.print_text(token)
    console.print_text(
        f"curl -H 'Authorization: Bearer {token[:8]}…' {loaded.settings.base_url}/api/v1/issues"
    )


@tokens_app.command("list")
def tokens_list(json_out: JsonOpt = False) -> None:
    """Every token, revoked ones included."""
    from retrospec.tokens import list_tokens

    loaded = load()
    require_db(loaded.settings)
    found = with_db(loaded, list_tokens)
    if json_out:
        console.print_json({"schema_version": 1, "tokens": [token_json(t) for t in found]})
        return
    now = now_ms()
    fit_table(
        [
            ("id", {"justify": "right"}),
            ("name", {}),
            ("scope", {}),
            ("prefix", {}),
            ("created", {}),
            ("last used", {"short": "used"}),
            ("state", {}),
        ],
        [
            (
                t.id,
                t.name,
                t.scope,
                t.prefix + "…",
                ago(t.created_at, now),
                ago(t.last_used_at, now) or "never",
                "revoked" if t.revoked_at else "live",
            )
            for t in found
        ],
        flex="name",
        empty="no tokens; create one with `retrospec tokens create NAME`",
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token: Annotated[str, typer.Argument(help="Token id or name.")],
) -> None:
    """Revoke a token: API calls with it are refused (401) from now on."""
    from retrospec.tokens import revoke_token

    loaded = load()
    require_db(loaded.settings)
    record = with_db(loaded, lambda c: revoke_token(c, token), write=True)
    console.success(f"revoked token {record.id} ({record.name})")
