"""Alert rules: which events (promoted, regression, spike) of which site go to which channel.

A rule is an e-mail address or a webhook (Slack, Discord or signed JSON), for one site or for
every site (site_id NULL). Targets are validated here, once, so the deliver job only meets
addresses and URLs that can be sent to.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from retrospec.clock import now_ms
from retrospec.errors import BadRequest, NotFound
from retrospec.sites import get_site

EVENTS = ("promoted", "regression", "spike")
FORMATS = ("slack", "discord", "json")
SECRET_PREFIX = "whsec_"  # noqa: S105 - a label, not a secret
MAX_URL = 2000
MAX_ADDRESS = 254
# Practical rather than RFC 5322 complete: one mailbox, a dotted domain, no display name.
_EMAIL_RE = re.compile(
    r"\A[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\Z"
)
_SECRET_RE = re.compile(r"\A[\x21-\x7e]{8,256}\Z")  # printable ASCII, no spaces


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One rule. format is 'email' for e-mail rules, else the webhook's payload format."""

    id: int
    site_id: str | None
    site_name: str | None
    channel: str  # email | webhook
    target: str  # the address or the URL
    format: str  # email | slack | discord | json
    secret: str | None
    events: tuple[str, ...]
    created_at: int

    def matches(self, site_id: str, event: str) -> bool:
        """Whether an event of this site is this rule's business."""
        return event in self.events and (self.site_id is None or self.site_id == site_id)

    @property
    def target_label(self) -> str:
        """The target as listings show it (a webhook URL is a credential: only its start)."""
        return self.target if self.channel == "email" else redact_url(self.target)

    @property
    def description(self) -> str:
        """'e-mail to ops@example.com' / 'slack webhook https://hooks.slack.com/serv…'."""
        if self.channel == "email":
            return f"e-mail to {self.target}"
        return f"{self.format} webhook {self.target_label}"


def redact_url(url: str) -> str:
    """scheme://host/ and the first characters of the path; the rest usually holds a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path or "/"
    shown = path if len(path) <= 10 else path[:10] + "…"
    return f"{parts.scheme}://{host}{shown}"


def parse_events(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """'promoted,spike' -> ('promoted', 'spike'); None means every event."""
    if value is None:
        return EVENTS
    parts = value.split(",") if isinstance(value, str) else list(value)
    wanted = {p.strip().lower() for p in parts if p.strip()}
    unknown = sorted(wanted - set(EVENTS))
    if unknown:
        raise BadRequest(f"unknown event {unknown[0]!r}; choose from {', '.join(EVENTS)}")
    if not wanted:
        raise BadRequest(f"name at least one event: {', '.join(EVENTS)}")
    return tuple(e for e in EVENTS if e in wanted)


def validate_address(value: str) -> str:
    """An e-mail address, stripped, or BadRequest."""
    address = value.strip()
    if len(address) > MAX_ADDRESS or not _EMAIL_RE.match(address):
        raise BadRequest(f"not an e-mail address: {value!r} (expected e.g. ops@example.com)")
    return address


def validate_webhook_url(value: str) -> str:
    """An http(s) URL with a host, or BadRequest."""
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"webhook URL must start with https:// or http://, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise BadRequest(f"webhook URL has an invalid port: {value!r}") from None
    if not parts.hostname or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise BadRequest(f"not a usable webhook URL: {value!r}")
    return url


def new_secret() -> str:
    """A signing secret for a JSON webhook."""
    return SECRET_PREFIX + secrets.token_urlsafe(24)


def _site_id(conn: sqlite3.Connection, site: str | None) -> str | None:
    return None if site is None or not site.strip() else get_site(conn, site.strip()).id


def _insert(
    conn: sqlite3.Connection,
    site_id: str | None,
    channel: str,
    target: str,
    fmt: str,
    secret: str | None,
    events: tuple[str, ...],
) -> AlertRule:
    (rule_id,) = conn.execute(
        "INSERT INTO alert_rules (site_id, channel, target, format, secret, events, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (site_id, channel, target, fmt, secret, ",".join(events), now_ms()),
    ).fetchone()
    return get_rule(conn, int(rule_id))


def add_email_rule(
    conn: sqlite3.Connection, to: str, *, site: str | None = None, events: tuple[str, ...] = EVENTS
) -> AlertRule:
    """Add an e-mail rule (runs on the writer)."""
    address = validate_address(to)
    return _insert(conn, _site_id(conn, site), "email", address, "email", None, events)


def add_webhook_rule(
    conn: sqlite3.Connection,
    url: str,
    *,
    fmt: str = "json",
    secret: str | None = None,
    site: str | None = None,
    events: tuple[str, ...] = EVENTS,
) -> AlertRule:
    """Add a webhook rule; a JSON webhook without a secret gets a generated one."""
    clean = validate_webhook_url(url)
    if fmt not in FORMATS:
        raise BadRequest(f"webhook format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if secret is not None and secret.strip() == "":
        secret = None
    if secret is not None and not _SECRET_RE.match(secret):
        raise BadRequest("webhook secret must be 8-256 printable characters without spaces")
    if secret is None and fmt == "json":
        secret = new_secret()
    return _insert(conn, _site_id(conn, site), "webhook", clean, fmt, secret, events)


_COLUMNS = (
    "r.id, r.site_id, s.name, r.channel, r.target, r.format, r.secret, r.events, r.created_at"
)
_FROM = " FROM alert_rules r LEFT JOIN sites s ON s.id = r.site_id "


def _row(row: sqlite3.Row | tuple[object, ...]) -> AlertRule:
    return AlertRule(
        id=int(str(row[0])),
        site_id=None if row[1] is None else str(row[1]),
        site_name=None if row[2] is None else str(row[2]),
        channel=str(row[3]),
        target=str(row[4]),
        format=str(row[5]),
        secret=None if row[6] is None else str(row[6]),
        events=tuple(e for e in str(row[7]).split(",") if e),
        created_at=int(str(row[8])),
    )


def list_rules(conn: sqlite3.Connection) -> list[AlertRule]:
    """Every rule, oldest first."""
    return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS}{_FROM}ORDER BY r.id").fetchall()]


def get_rule(conn: sqlite3.Connection, rule_id: int) -> AlertRule:
    """One rule (NotFound)."""
    if not 0 < int(rule_id) < 2**63:
        raise NotFound(f"no alert rule {rule_id}")
    row = conn.execute(f"SELECT {_COLUMNS}{_FROM}WHERE r.id = ?", (int(rule_id),)).fetchone()
    if row is None:
        raise NotFound(f"no alert rule {rule_id}; `retrospec alerts list` shows the rules")
    return _row(row)


def remove_rule(conn: sqlite3.Connection, rule_id: int) -> AlertRule:
    """Delete a rule; its queued alerts go with it, its delivery log stays (runs on the writer)."""
    rule = get_rule(conn, rule_id)
    conn.execute("DELETE FROM alert_rules WHERE id = ?", (rule.id,))
    return rule


def rules_by_id(conn: sqlite3.Connection) -> dict[int, AlertRule]:
    """Every rule keyed by id (the outbox and the deliver job look rules up often)."""
    return {rule.id: rule for rule in list_rules(conn)}
