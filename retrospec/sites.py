"""Sites and their credentials: ingest keys and upload tokens (shown once, stored as SHA-256
digests), and the public DSN.

The ingest key is public by design (it sits in every page); the upload token, for CI uploads
of source maps, is a secret and a different kind of credential: neither works as the other.
A Sentry SDK addresses a site by its DSN, `http(s)://<dsn key>@<host>/<project id>`. The DSN key
is a separate per-site key, public by design like Sentry's own (every page carries it), so it is
stored as is and can be shown at any time; it is 32 hex digits because the SDK only accepts
word characters there, which an ingest key (`rsk_` + URL-safe base64) does not always satisfy.
The ingest key and the DSN key both admit data for their site wherever a key is asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from retrospec.clock import now_ms
from retrospec.errors import BadRequest, Conflict, NotFound

KEY_PREFIX = "rsk_"
UPLOAD_TOKEN_PREFIX = "rsu_"  # noqa: S105 - a prefix, not a secret
DEMO_SITE_ID = "demo"
DEMO_SITE_NAME = "demo"
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}\Z")
DSN_KEY_RE = re.compile(r"\A[0-9a-f]{32}\Z")
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
    fetch_sourcemaps: bool = False  # fetch bundles and maps from the allowed origins
    project_id: int | None = None  # the number in the site's DSN
    dsn_key: str | None = None  # the public key in the site's DSN
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


def new_dsn_key() -> str:
    """A fresh public DSN key: 128 random bits as 32 hex digits (Sentry's format)."""
    return secrets.token_hex(16)


def dsn(site: Site, base_url: str) -> str | None:
    """The site's Sentry DSN for a server reached at base_url (None before migration 9)."""
    if site.project_id is None or not site.dsn_key:
        return None
    parts = urlsplit(base_url.rstrip("/"))
    netloc = f"{site.dsn_key}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, f"{parts.path}/{site.project_id}", "", ""))


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
        fetch_sourcemaps=bool(row[6]),
        project_id=None if row[7] is None else int(str(row[7])),
        dsn_key=None if row[8] is None else str(row[8]),
        replay_assets=str(row[9]),
    )


_SITE_COLUMNS = (
    "id, name, origins, promote_after, retention_days, created_at, fetch_sourcemaps, project_id, "
    "dsn_key, replay_assets"
)


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
    # Inside the write transaction (one writer), so the next number cannot be taken twice.
    project_id = int(
        conn.execute("SELECT coalesce(max(project_id), 0) + 1 FROM sites").fetchone()[0]
    )
    public = new_dsn_key()
    conn.execute(
        "INSERT INTO sites (id, name, origins, created_at, project_id, dsn_key) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (sid, name, json.dumps(clean), created, project_id, public),
    )
    key = add_key(conn, sid)
    site = Site(
        sid,
        name,
        tuple(clean),
        None,
        None,
        created,
        project_id=project_id,
        dsn_key=public,
    )
    return site, key


def add_key(conn: sqlite3.Connection, site_id: str, key: str | None = None) -> str:
    """Store the digest of a new key for a site; return the plain key."""
    key = key or new_key()
    conn.execute(
        "INSERT INTO site_keys (site_id, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?)",
        (site_id, hash_key(key), key[: len(KEY_PREFIX) + 6], now_ms()),
    )
    return key


def rotate_key(conn: sqlite3.Connection, site_id: str) -> str:
    """Revoke every key of a site, the DSN key included, and issue new ones; return the key."""
    get_site(conn, site_id)
    conn.execute(
        "UPDATE site_keys SET revoked_at = ? WHERE site_id = ? AND revoked_at IS NULL",
        (now_ms(), site_id),
    )
    conn.execute("UPDATE sites SET dsn_key = ? WHERE id = ?", (new_dsn_key(), site_id))
    return add_key(conn, site_id)


def set_origins(conn: sqlite3.Connection, site_id: str, origins: list[str]) -> Site:
    """Replace a site's allowed origins."""
    clean = sorted({normalize_origin(o) for o in origins if o.strip()})
    get_site(conn, site_id)
    conn.execute("UPDATE sites SET origins = ? WHERE id = ?", (json.dumps(clean), site_id))
    return get_site(conn, site_id)


def set_fetch_sourcemaps(conn: sqlite3.Connection, site_id: str, enabled: bool) -> Site:
    """Turn fetching bundles and maps from the site's allowed origins on or off."""
    site = get_site(conn, site_id)
    if enabled and not site.origins:
        raise BadRequest(
            f"site {site.name} allows any origin; fetching source maps needs its own origins "
            "(`retrospec sites origins SITE --origin https://...`)"
        )
    conn.execute(
        "UPDATE sites SET fetch_sourcemaps = ? WHERE id = ?", (1 if enabled else 0, site.id)
    )
    return get_site(conn, site.id)


def create_upload_token(conn: sqlite3.Connection, site_id: str) -> str:
    """Revoke the site's upload tokens and store a new one; return it (shown once)."""
    site = get_site(conn, site_id)
    at = now_ms()
    conn.execute(
        "UPDATE upload_tokens SET revoked_at = ? WHERE site_id = ? AND revoked_at IS NULL",
        (at, site.id),
    )
    token = UPLOAD_TOKEN_PREFIX + secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO upload_tokens (site_id, token_hash, token_prefix, created_at) "
        "VALUES (?, ?, ?, ?)",
        (site.id, hash_key(token), token[: len(UPLOAD_TOKEN_PREFIX) + 6], at),
    )
    return token


def site_for_upload_token(conn: sqlite3.Connection, token: str) -> Site | None:
    """The site an active upload token belongs to, or None."""
    columns = ", ".join("s." + c.strip() for c in _SITE_COLUMNS.split(","))
    row = conn.execute(
        f"SELECT {columns} FROM upload_tokens t JOIN sites s ON s.id = t.site_id "
        "WHERE t.token_hash = ? AND t.revoked_at IS NULL",
        (hash_key(token),),
    ).fetchone()
    return None if row is None else _row_to_site(row)


def upload_token_prefixes(conn: sqlite3.Connection, site_id: str) -> list[str]:
    """Display prefixes of a site's active upload tokens."""
    rows = conn.execute(
        "SELECT token_prefix FROM upload_tokens WHERE site_id = ? AND revoked_at IS NULL",
        (site_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


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
    """The site an active ingest key or DSN key belongs to, or None."""
    row = conn.execute(_SITE_FOR_KEY, (hash_key(key),)).fetchone()
    if row is None and DSN_KEY_RE.match(key):
        row = conn.execute(
            f"SELECT {_SITE_COLUMNS} FROM sites WHERE dsn_key = ?", (key,)
        ).fetchone()
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
