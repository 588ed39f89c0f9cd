"""Dashboard accounts: argon2 passwords, hashed login sessions, CSRF, throttling, setup token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from retrospec.clock import now_ms
from retrospec.errors import BadRequest, Conflict, Forbidden, NotFound
from retrospec.ids import is_row_id

USERNAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
MIN_PASSWORD = 8
# argon2 hashes any length, but an attacker-chosen megabyte password would cost us CPU.
MAX_PASSWORD = 512
SETUP_META_KEY = "setup_token_sha256"

# argon2-cffi's defaults are RFC 9106's low-memory profile (t=3, m=64 MiB, p=4).
_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard account."""

    id: int
    username: str
    created_at: int
    last_login_at: int | None


@dataclass(frozen=True, slots=True)
class Login:
    """A signed-in browser: whose it is and the CSRF token its forms must carry."""

    user_id: int
    username: str
    csrf_token: str
    expires_at: int


# --- passwords -------------------------------------------------------------------------


def validate_username(username: str) -> str:
    """The username, stripped, or BadRequest saying what a valid one looks like."""
    name = username.strip()
    if not USERNAME_RE.match(name):
        raise BadRequest(
            "username must be 1-64 characters: letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )
    return name


def validate_password(password: str) -> None:
    """BadRequest unless the password is long enough (and not absurdly long)."""
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadRequest(f"password must be at most {MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    """argon2id hash (slow on purpose: call it off the event loop)."""
    return _hasher.hash(password)


@cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether password matches; with no stored hash it still does the work, so timing does not
    reveal which usernames exist."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether a hash was made with weaker parameters than today's defaults."""
    return _hasher.check_needs_rehash(stored_hash)


# --- users (sync functions run on the writer or a CLI connection) ------------------------


def _row_to_user(row: sqlite3.Row | tuple[object, ...]) -> User:
    return User(
        id=int(str(row[0])),
        username=str(row[1]),
        created_at=int(str(row[2])),
        last_login_at=None if row[3] is None else int(str(row[3])),
    )


def create_user(conn: sqlite3.Connection, username: str, password_hash: str) -> User:
    """Insert an account (the password is already hashed); Conflict if the name is taken."""
    name = validate_username(username)
    if conn.execute("SELECT 1 FROM users WHERE username = ?", (name,)).fetchone():
        raise Conflict(f"a user named {name!r} already exists")
    created = now_ms()
    (user_id,) = conn.execute(
        "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?) RETURNING id",
        (name, password_hash, created),
    ).fetchone()
    # The setup link exists only while there is no account; the first account burns it.
    conn.execute("DELETE FROM meta WHERE key = ?", (SETUP_META_KEY,))
    return User(id=int(user_id), username=name, created_at=created, last_login_at=None)


def set_password_hash(conn: sqlite3.Connection, user_id: int, password_hash: str) -> None:
    """Replace a user's hash (after a rehash with stronger parameters)."""
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def get_user(conn: sqlite3.Connection, username: str) -> User:
    """An account by username, any letter case (errors.NotFound)."""
    row = conn.execute(
        "SELECT id, username, created_at, last_login_at FROM users WHERE username = ?",
        (username.strip(),),
    ).fetchone()
    if row is None:
        raise NotFound(f"no user {username!r}; `retrospec users list` shows the accounts")
    return _row_to_user(row)


def get_user_by_id(conn: sqlite3.Connection, user_id: int) -> User:
    """An account by id (errors.NotFound)."""
    if not is_row_id(user_id):
        raise NotFound("that account no longer exists")
    row = conn.execute(
        "SELECT id, username, created_at, last_login_at FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    if row is None:
        raise NotFound("that account no longer exists")
    return _row_to_user(row)


def change_password(
    conn: sqlite3.Connection, user_id: int, password_hash: str, *, keep_token: str | None = None
) -> int:
    """Set a new password and end the user's other logins; returns how many ended.

    keep_token is the session the change was made from (the dashboard keeps it signed in);
    without it (the CLI) every login of the user ends.
    """
    get_user_by_id(conn, user_id)
    set_password_hash(conn, user_id, password_hash)
    if keep_token is None:
        return end_user_sessions(conn, user_id)
    return int(
        conn.execute(
            "DELETE FROM auth_sessions WHERE user_id = ? AND token_hash != ?",
            (user_id, token_digest(keep_token)),
        ).rowcount
    )


def remove_user(conn: sqlite3.Connection, user_id: int) -> int:
    """Delete an account and end its logins; returns how many logins ended."""
    get_user_by_id(conn, user_id)
    ended = end_user_sessions(conn, user_id)
    conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
    return ended


def login_counts(conn: sqlite3.Connection) -> dict[int, int]:
    """Live logins per user id."""
    rows = conn.execute(
        "SELECT user_id, count(*) FROM auth_sessions WHERE expires_at > ? GROUP BY user_id",
        (now_ms(),),
    ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def count_users(conn: sqlite3.Connection) -> int:
    """How many accounts exist."""
    return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])


def list_users(conn: sqlite3.Connection) -> list[User]:
    """Every account, oldest first."""
    rows = conn.execute(
        "SELECT id, username, created_at, last_login_at FROM users ORDER BY id"
    ).fetchall()
    return [_row_to_user(r) for r in rows]


def get_credentials(conn: sqlite3.Connection, username: str) -> tuple[int, str, str] | None:
    """(user id, canonical username, password hash) for a username, any letter case."""
    rows = list(
        conn.execute(
            "SELECT id, username, password_hash FROM users WHERE username = ?", (username.strip(),)
        ).fetchall()
    )
    if not rows:
        return None
    return int(rows[0][0]), str(rows[0][1]), str(rows[0][2])


# --- login sessions ----------------------------------------------------------------------


def token_digest(token: str) -> str:
    """What auth_sessions stores instead of the token (a stolen database grants no login)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(conn: sqlite3.Connection, user_id: int, hours: float) -> tuple[str, Login]:
    """Create a login session; return the plain token (for the cookie) and the Login."""
    row = conn.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        raise NotFound("that account no longer exists")
    now = now_ms()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + int(hours * 3_600_000)
    # Housekeeping rides on logins: the table stays as small as the set of live sessions.
    conn.execute("DELETE FROM auth_sessions WHERE expires_at <= ?", (now,))
    conn.execute(
        "INSERT INTO auth_sessions (token_hash, user_id, csrf_token, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (token_digest(token), user_id, csrf, now, expires),
    )
    conn.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (now, user_id))
    return token, Login(user_id, str(row[0]), csrf, expires)


def load_session(conn: sqlite3.Connection, token: str) -> Login | None:
    """The live login for a session token, or None when unknown or expired."""
    rows = list(
        conn.execute(
            "SELECT s.user_id, u.username, s.csrf_token, s.expires_at FROM auth_sessions s "
            "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?",
            (token_digest(token), now_ms()),
        ).fetchall()
    )
    if not rows:
        return None
    r = rows[0]
    return Login(int(r[0]), str(r[1]), str(r[2]), int(r[3]))


def end_session(conn: sqlite3.Connection, token: str) -> None:
    """Forget a login session (logout)."""
    conn.execute("DELETE FROM auth_sessions WHERE token_hash = ?", (token_digest(token),))


def end_user_sessions(conn: sqlite3.Connection, user_id: int) -> int:
    """Sign a user out everywhere."""
    return conn.execute("DELETE FROM auth_sessions WHERE user_id = ?", (user_id,)).rowcount


# --- signing and CSRF ----------------------------------------------------------------------


def _mac(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(secret: bytes, purpose: str, value: str) -> str:
    """value.mac — the purpose keeps a signature for one cookie from validating another."""
    return f"{value}.{_mac(secret, purpose, value)}"


def unsign(secret: bytes, purpose: str, signed: str | None) -> str | None:
    """The value if the signature is ours, else None."""
    if not signed or "." not in signed:
        return None
    value, _, mac = signed.rpartition(".")
    if not value or not hmac.compare_digest(mac, _mac(secret, purpose, value)):
        return None
    return value


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def form_token(secret: bytes, nonce: str) -> str:
    """CSRF token for forms shown before login (login, setup): bound to a cookie nonce."""
    return _mac(secret, "form-csrf", nonce)


# --- login throttling ------------------------------------------------------------------------


class LoginThrottle:
    """Failed logins per username and per client address, kept in memory.

    The first `free` failures cost nothing (typos); each later one doubles the wait before the
    next attempt is even checked, up to `max_delay`. A quiet hour forgets the history.
    """

    def __init__(
        self,
        *,
        free: int = 5,
        ip_free: int = 20,
        base_delay: float = 2.0,
        max_delay: float = 900.0,
        forget_after: float = 3600.0,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        # One office behind one NAT address shares this budget, hence more slack than per user.
        self.ip_free = ip_free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[int, float]] = {}

    @staticmethod
    def _keys(username: str, ip: str | None) -> list[tuple[str, bool]]:
        keys = [("u:" + username.strip().lower(), False)]
        if ip:
            keys.append(("ip:" + ip, True))
        return keys

    def _wait(self, key: str, is_ip: bool, now: float) -> float:
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        failures, last = entry
        if now - last > self.forget_after:
            return 0.0
        free = self.ip_free if is_ip else self.free
        if failures < free:
            return 0.0
        delay = min(self.max_delay, self.base_delay * float(2 ** (failures - free)))
        return max(0.0, last + delay - now)

    def retry_after(self, username: str, ip: str | None) -> float:
        """Seconds before this username may try again from this address (0: go ahead)."""
        now = self._clock()
        return max(self._wait(k, is_ip, now) for k, is_ip in self._keys(username, ip))

    def failure(self, username: str, ip: str | None) -> None:
        """Record a failed attempt."""
        now = self._clock()
        if len(self._entries) >= self.max_entries:
            self._forget_old(now)
        for key, _ in self._keys(username, ip):
            failures, last = self._entries.get(key, (0, now))
            if now - last > self.forget_after:
                failures = 0
            self._entries[key] = (failures + 1, now)

    def success(self, username: str, ip: str | None) -> None:
        """A correct password clears that username's record (the address keeps its own)."""
        self._entries.pop(self._keys(username, ip)[0][0], None)

    def _forget_old(self, now: float) -> None:
        stale = [k for k, (_, last) in self._entries.items() if now - last > self.forget_after]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:
            # Under a flood of distinct names, dropping everything beats growing without bound.
            self._entries.clear()


# --- first-account setup token -----------------------------------------------------------------


def issue_setup_token(conn: sqlite3.Connection) -> str | None:
    """A fresh one-time setup token while no account exists (stored hashed), else None.

    Each server start issues a new one, so a link printed by an earlier start stops working.
    """
    if count_users(conn):
        conn.execute("DELETE FROM meta WHERE key = ?", (SETUP_META_KEY,))
        return None
    token = secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (SETUP_META_KEY, token_digest(token)),
    )
    return token


def setup_token_valid(conn: sqlite3.Connection, token: str | None) -> bool:
    """Whether token is the live setup token (and there is still no account)."""
    if not token:
        return False
    rows = list(
        conn.execute(
            "SELECT value, (SELECT count(*) FROM users) FROM meta WHERE key = ?",
            (SETUP_META_KEY,),
        ).fetchall()
    )
    if not rows or int(rows[0][1]):
        return False
    return hmac.compare_digest(str(rows[0][0]), token_digest(token))


def create_first_user(
    conn: sqlite3.Connection, token: str, username: str, password_hash: str
) -> User:
    """Create the first account with the setup token, burning the token."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (SETUP_META_KEY,)).fetchone()
    # Re-checked inside the write transaction: two tabs submitting at once create one account.
    if (
        row is None
        or count_users(conn)
        or not hmac.compare_digest(str(row[0]), token_digest(token))
    ):
        raise Forbidden("this setup link has already been used or has expired")
    return create_user(conn, username, password_hash)
