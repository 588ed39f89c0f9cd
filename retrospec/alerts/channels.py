"""Sending: SMTP (stdlib smtplib) and webhook POSTs (stdlib urllib), classified for retrying.

These block on the network, so they run only in the deliver job's threads or the CLI, never on
the event loop. Each send answers an Outcome: sent, retry (5xx, 429, timeouts, refused or reset
connections, a 4xx SMTP reply) or failed (any other 4xx HTTP answer, a 5xx SMTP reply, a
redirect, a configuration that cannot work).
"""

from __future__ import annotations

import http.client
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote, urlsplit

from retrospec.errors import ConfigError

RESPONSE_SNIPPET = 200


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one delivery attempt went."""

    kind: str  # sent | retry | failed
    detail: str
    retry_after: float | None = None  # seconds, when the receiver asked (429 Retry-After)
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to submit mail, parsed from smtp_url."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpConfig:
    """smtp://user:pass@host:587 (STARTTLS when offered) or smtps://user:pass@host:465."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError("smtp_url must start with smtp:// or smtps://")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("smtp_url has an invalid port") from None
    if not parts.hostname:
        raise ConfigError("smtp_url names no host, e.g. smtp://mail.example.com:587")
    implicit = parts.scheme == "smtps"
    return SmtpConfig(
        host=parts.hostname,
        port=port or (465 if implicit else 25),
        implicit_tls=implicit,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def redact_smtp_url(url: str) -> str:
    """smtp_url with the password replaced, for `retrospec settings` and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def _elapsed(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def send_email(
    config: SmtpConfig,
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    message_id: str,
    timeout: float,
) -> Outcome:
    """Submit one plain-text message; STARTTLS whenever the server offers it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    # Deterministic per outbox row: a message re-sent after a crash carries the same id, so
    # mail systems that deduplicate by Message-ID show it once.
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    start = time.monotonic()
    context = ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if config.implicit_tls:
            client = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=timeout)
        with client:
            client.ehlo()
            if not config.implicit_tls and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if config.username:
                client.login(config.username, config.password or "")
            client.send_message(msg, from_addr=sender, to_addrs=[to])
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        return _smtp_reply(int(code), reply, "recipient refused", start)
    except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth, …
        return _smtp_reply(int(exc.smtp_code), exc.smtp_error, "server said", start)
    except smtplib.SMTPNotSupportedError as exc:
        return Outcome("failed", f"SMTP: {exc}", duration_ms=_elapsed(start))
    except ssl.SSLError as exc:
        return Outcome("retry", f"SMTP TLS error: {exc}", duration_ms=_elapsed(start))
    except (smtplib.SMTPException, OSError) as exc:
        # Refused, reset, timed out, unknown host, disconnected: the server may come back.
        return Outcome(
            "retry",
            f"SMTP {config.host}:{config.port} unreachable: {_reason(exc)}",
            duration_ms=_elapsed(start),
        )
    return Outcome("sent", f"accepted by {config.host}:{config.port}", duration_ms=_elapsed(start))


def _smtp_reply(code: int, reply: Any, what: str, start: float) -> Outcome:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    detail = f"SMTP {what} {code} {' '.join(text.split())[:RESPONSE_SNIPPET]}"
    # 4xx is a transient refusal (greylisting, mailbox busy); 5xx is final.
    kind = "retry" if 400 <= code < 500 else "failed"
    return Outcome(kind, detail, duration_ms=_elapsed(start))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:RESPONSE_SNIPPET]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: following it would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post_webhook(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """POST body to url; 2xx is sent, 5xx/429/408 and network errors retry, the rest fail."""
    start = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = int(response.status)
            snippet = response.read(RESPONSE_SNIPPET).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        try:
            snippet = exc.read(RESPONSE_SNIPPET).decode("utf-8", "replace")
        except OSError:
            snippet = ""
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        detail = f"HTTP {status} {' '.join(snippet.split())}".strip()
        if 300 <= status < 400:
            location = exc.headers.get("Location", "") if exc.headers else ""
            return Outcome(
                "failed",
                f"HTTP {status}: the webhook redirects to {location[:100]}; use that URL",
                duration_ms=_elapsed(start),
            )
        kind = "retry" if status >= 500 or status in (408, 429) else "failed"
        return Outcome(kind, detail, retry_after=retry_after, duration_ms=_elapsed(start))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        # Refused, reset, timed out, unknown host, or a receiver that answered garbage.
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = _reason(reason) if isinstance(reason, BaseException) else str(reason)
        return Outcome("retry", f"unreachable: {text}", duration_ms=_elapsed(start))
    return Outcome("sent", f"HTTP {status}", duration_ms=_elapsed(start))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides
