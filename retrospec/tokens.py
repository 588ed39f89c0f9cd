"""Personal tokens for the JSON API: shown once, stored as SHA-256 digests, read or write scope.

Tokens are 256-bit random strings, so a fast hash is enough (as for ingest keys); a stolen
database grants no API access. They authorise only /api/v1 (never the dashboard), and the API
accepts nothing else (never the dashboard's cookie).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from dataclasses import dataclass

from retrospec.clock import now_ms
from retrospec.errors import BadRequest, Conflict, NotFound

TOKEN_PREFIX = "rst_"  # noqa: S105 - a label, not a secret
SCOPES = ("read", "write")
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9 ._@-]{0,62}\Z")
_TOKEN_RE = re.compile(r"\A" + TOKEN_PREFIX + r"[A-Za-z0-9_-]{20,100}\Z")
# A token's last use is written at most this often (a busy script would otherwise turn every
# read into a write).
TOUCH_INTERVAL_MS = 60_000


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token as listed: never the token itself, only its first characters."""

    id: int
    name: str
    scope: str
    prefix: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None

    @property
    def can_write(self) -> bool:
        """Whether the token may change issues."""
        return self.scope == "write"


_COLUMNS = "id, name, scope, token_prefix, created_at, last_used_at, revoked_at"


def _row(row: sqlite3.Row | tuple[object, ...]) -> ApiToken:
    return ApiToken(
        id=int(str(row[0])),
        name=str(row[1]),
        scope=str(row[2]),
        prefix=str(row[3]),
        created_at=int(str(row[4])),
        last_used_at=None if row[5] is None else int(str(row[5])),
        revoked_at=None if row[6] is None else int(str(row[6])),
    )


def token_digest(token: str) -> str:
    """What api_tokens stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(conn: sqlite3.Connection, name: str, scope: str = "read") -> tuple[ApiToken, str]:
    """Store a new token's digest; return the token record and the plain token (shown once)."""
    name = name.strip()
    if not _NAME_RE.match(name):
        raise BadRequest(
            "token name must be 1-63 characters: letters, digits, space, dot, dash, underscore, @"
        )
    if scope not in SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if conn.execute(
        "SELECT 1 FROM api_tokens WHERE name = ? AND revoked_at IS NULL", (name,)
    ).fetchone():
        raise Conflict(f"a token named {name!r} already exists; revoke it or pick another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = now_ms()
    prefix = token[: len(TOKEN_PREFIX) + 6]
    (token_id,) = conn.execute(
        "INSERT INTO api_tokens (name, scope, token_hash, token_prefix, created_at) "
        "VALUES (?, ?, ?, ?, ?) RETURNING id",
        (name, scope, token_digest(token), prefix, created),
    ).fetchone()
    record = ApiToken(int(token_id), name, scope, prefix, created, None, None)
    return record, token


def list_tokens(conn: sqlite3.Connection) -> list[ApiToken]:
    """Every token, revoked ones included, oldest first."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY id").fetchall()
    return [_row(r) for r in rows]


def revoke_token(conn: sqlite3.Connection, id_or_name: str) -> ApiToken:
    """Revoke a live token by id or name; it stops working at once."""
    text = id_or_name.strip()
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM api_tokens WHERE revoked_at IS NULL AND (name = ? OR "
        "CAST(id AS TEXT) = ?) ORDER BY CAST(id AS TEXT) = ? DESC",
        (text, text, text),
    ).fetchall()
    if not rows:
        raise NotFound(f"no live token {text!r}; `retrospec tokens list` shows them")
    token = _row(rows[0])
    now = now_ms()
    conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (now, token.id))
    return ApiToken(
        token.id, token.name, token.scope, token.prefix, token.created_at, token.last_used_at, now
    )


def find_token(conn: sqlite3.Connection, token: str) -> ApiToken | None:
    """The live token record for a plain token, or None (malformed, unknown or revoked)."""
    if not _TOKEN_RE.match(token):
        return None  # no lookup for strings that cannot be a token
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        (token_digest(token),),
    ).fetchone()
    return None if row is None else _row(row)


def needs_touch(token: ApiToken, now: int) -> bool:
    """Whether the token's last use is stale enough to be written again."""
    return token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL_MS


def touch_token(conn: sqlite3.Connection, token_id: int, now: int) -> None:
    """Record that the token was used (runs on the writer)."""
    conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, token_id))
