"""Sites and their ingest keys (keys are shown once and stored as SHA-256 digests)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from retrospec.clock import now_ms
from retrospec.errors import BadRequest, Conflict, NotFound

KEY_PREFIX = "rsk_"
DEMO_SITE_ID = "demo"
DEMO_SITE_NAME = "demo"
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}\Z")
# How a replay treats the recorded page's remote assets (see migration 5).
REPLAY_ASSETS = ("blocked", "remote")


@dataclass(frozen=True, slots=True)
class Site:
    """A site that may send data, with the origins its pages run on (empty means any)."""

    id: str
    name: str
    origins: tuple[str, ...]
    promote_after: int | None
    retention_days: float | None
    created_at: int
    replay_assets: str = "blocked"

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a browser page at origin may send data for this site."""
        if not self.origins or origin is None:
            # No Origin header: not a browser cross-origin request (curl, server-side SDKs).
            return True
        try:
            return normalize_origin(origin) in self.origins
        except BadRequest:  # "null" (sandboxed pages, file://) or garbage: not a listed origin
            return False


def hash_key(key: str) -> str:
    """Digest of an ingest key. Keys are 144-bit random tokens, so a fast hash is safe here."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh ingest key."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def demo_key(secret: bytes) -> str:
    """The demo site's key, derived from the instance secret so /demo can embed it."""
    return KEY_PREFIX + "demo_" + hmac.new(secret, b"demo-site-key", "sha256").hexdigest()[:32]


def normalize_origin(value: str) -> str:
    """'https://Example.com/' -> 'https://example.com' (scheme, host and non-default port)."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"origin must look like https://example.com, got {value!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        raise BadRequest(f"origin has an invalid port: {value!r}") from None
    if port and port != default:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def _row_to_site(row: sqlite3.Row | tuple[object, ...]) -> Site:
    return Site(
        id=str(row[0]),
        name=str(row[1]),
        origins=tuple(json.loads(str(row[2]))),
        promote_after=None if row[3] is None else int(str(row[3])),
        retention_days=None if row[4] is None else float(str(row[4])),
        created_at=int(str(row[5])),
        replay_assets=str(row[6]),
    )


_SITE_COLUMNS = "id, name, origins, promote_after, retention_days, created_at, replay_assets"


def create_site(
    conn: sqlite3.Connection, name: str, origins: list[str], *, site_id: str | None = None
) -> tuple[Site, str]:
    """Insert a site and its first key; return the site and the plain key (shown once)."""
    name = name.strip()
    if not _NAME_RE.match(name):
        raise BadRequest(
            "site name must be 1-63 characters: letters, digits, space, dot, dash, underscore"
        )
    clean = sorted({normalize_origin(o) for o in origins})
    if conn.execute("SELECT 1 FROM sites WHERE name = ? OR id = ?", (name, name)).fetchone():
        raise Conflict(f"a site named {name!r} already exists")
    sid = site_id or secrets.token_hex(5)
    created = now_ms()
    conn.execute(
        "INSERT INTO sites (id, name, origins, created_at) VALUES (?, ?, ?, ?)",
        (sid, name, json.dumps(clean), created),
    )
    key = add_key(conn, sid)
    return Site(sid, name, tuple(clean), None, None, created, "blocked"), key


def add_key(conn: sqlite3.Connection, site_id: str, key: str | None = None) -> str:
    """Store the digest of a new key for a site; return the plain key."""
    key = key or new_key()
    conn.execute(
        "INSERT INTO site_keys (site_id, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?)",
        (site_id, hash_key(key), key[: len(KEY_PREFIX) + 6], now_ms()),
    )
    return key


def rotate_key(conn: sqlite3.Connection, site_id: str) -> str:
    """Revoke every key of a site and issue a new one."""
    get_site(conn, site_id)
    conn.execute(
        "UPDATE site_keys SET revoked_at = ? WHERE site_id = ? AND revoked_at IS NULL",
        (now_ms(), site_id),
    )
    return add_key(conn, site_id)


def set_origins(conn: sqlite3.Connection, site_id: str, origins: list[str]) -> Site:
    """Replace a site's allowed origins."""
    clean = sorted({normalize_origin(o) for o in origins if o.strip()})
    get_site(conn, site_id)
    conn.execute("UPDATE sites SET origins = ? WHERE id = ?", (json.dumps(clean), site_id))
    return get_site(conn, site_id)


def set_replay_assets(conn: sqlite3.Connection, site_id: str, mode: str) -> Site:
    """Block (default) or allow the recorded page's remote assets when this site's replays play."""
    if mode not in REPLAY_ASSETS:
        raise BadRequest(f"replay assets must be one of {', '.join(REPLAY_ASSETS)}, got {mode!r}")
    site = get_site(conn, site_id)
    conn.execute("UPDATE sites SET replay_assets = ? WHERE id = ?", (mode, site.id))
    return get_site(conn, site.id)


def get_site(conn: sqlite3.Connection, id_or_name: str) -> Site:
    """A site by id or name."""
    row = conn.execute(
        f"SELECT {_SITE_COLUMNS} FROM sites WHERE id = ? OR name = ? ORDER BY id = ? DESC",
        (id_or_name, id_or_name, id_or_name),
    ).fetchone()
    if row is None:
        raise NotFound(f"no site {id_or_name!r}; `retrospec sites list` shows the sites")
    return _row_to_site(row)


def list_sites(conn: sqlite3.Connection) -> list[Site]:
    """Every site, oldest first."""
    rows = conn.execute(f"SELECT {_SITE_COLUMNS} FROM sites ORDER BY created_at, id").fetchall()
    return [_row_to_site(r) for r in rows]


def key_prefixes(conn: sqlite3.Connection, site_id: str) -> list[str]:
    """Display prefixes of a site's active keys."""
    rows = conn.execute(
        "SELECT key_prefix FROM site_keys WHERE site_id = ? AND revoked_at IS NULL ORDER BY id",
        (site_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


_SITE_FOR_KEY = (
    f"SELECT {', '.join('s.' + c.strip() for c in _SITE_COLUMNS.split(','))} "
    "FROM site_keys k JOIN sites s ON s.id = k.site_id "
    "WHERE k.key_hash = ? AND k.revoked_at IS NULL"
)


def site_for_key(conn: sqlite3.Connection, key: str) -> Site | None:
    """The site an active key belongs to, or None."""
    row = conn.execute(_SITE_FOR_KEY, (hash_key(key),)).fetchone()
    return None if row is None else _row_to_site(row)


def ensure_demo_site(conn: sqlite3.Connection, secret: bytes) -> Site:
    """Create the built-in demo site (any origin) with its derived key, if missing."""
    row = conn.execute(
        f"SELECT {_SITE_COLUMNS} FROM sites WHERE id = ?", (DEMO_SITE_ID,)
    ).fetchone()
    if row is None:
        # Its failures follow the normal promotion rule: the demo key is public, so a single
        # request must not be able to open issues.
        site, _ = create_site(conn, DEMO_SITE_NAME, [], site_id=DEMO_SITE_ID)
        conn.execute("DELETE FROM site_keys WHERE site_id = ?", (DEMO_SITE_ID,))
    else:
        site = _row_to_site(row)
    digest = hash_key(demo_key(secret))
    if not conn.execute("SELECT 1 FROM site_keys WHERE key_hash = ?", (digest,)).fetchone():
        add_key(conn, DEMO_SITE_ID, demo_key(secret))
    else:  # turned off by an earlier start, on again now
        conn.execute("UPDATE site_keys SET revoked_at = NULL WHERE key_hash = ?", (digest,))
    return site


def revoke_demo_key(conn: sqlite3.Connection) -> int:
    """Stop the demo site's public key from working (the demo is off); its data stays."""
    return int(
        conn.execute(
            "UPDATE site_keys SET revoked_at = ? WHERE site_id = ? AND revoked_at IS NULL",
            (now_ms(), DEMO_SITE_ID),
        ).rowcount
    )


class KeyCache:
    """Key digest -> site, cached briefly so ingest skips a query per request.

    Entries expire after `ttl` seconds so a key revoked from another process (the CLI) stops
    working within that time; in-process changes call clear().
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Site | None]] = {}

    def get(self, key: str) -> tuple[bool, Site | None]:
        """(hit, site) for a plain key."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, site: Site | None) -> None:
        """Remember the lookup result (misses too, so unknown keys cannot hammer SQLite)."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, site)

    def clear(self) -> None:
        """Forget everything (after a key rotation or origin change in this process)."""
        self._entries.clear()
