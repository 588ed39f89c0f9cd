"""The deliver job: spikes and digests into the outbox, then every due row out to its channel.

Runs in a job thread (never on the event loop); each rule's queue gets a thread of its own, so
one dead receiver (a 10 s SMTP timeout) never holds up another rule's messages, and after a
failed attempt that rule's other alerts wait for the same backoff instead of each timing out.

Delivery guarantee. A row is claimed (status sending, attempts + 1, a lease) in one transaction,
sent outside any transaction, and marked sent in another. A crash before the claim, or between
the claim and the send, loses nothing: the row is due again (at once, or when the lease ends)
and is sent once. The one window left is between the receiver accepting the message and our
COMMIT of "sent" (one short write): a crash there sends the message again when the lease ends.
The copy carries the same idempotency key as the first (Message-ID for e-mail,
X-Retrospec-Delivery and the body's `id` for webhooks), so receivers that deduplicate show it
once. Exactly-once over SMTP or HTTP needs the receiver's help; this is as close as a sender
gets: at-least-once with a stable key, and never twice outside that window.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from retrospec.alerts import outbox
from retrospec.alerts.channels import Outcome, parse_smtp_url, post_webhook, send_email
from retrospec.alerts.formats import email, webhook
from retrospec.alerts.messages import (
    DIGEST_LINES,
    Digest,
    IssueAlert,
    Notice,
    issue_alert,
    sample_alert,
    summary_alert,
)
from retrospec.alerts.outbox import OutboxRow
from retrospec.alerts.rules import AlertRule, rules_by_id
from retrospec.clock import now_ms
from retrospec.errors import ConfigError, NotFound
from retrospec.issues.evidence import first_release, get_evidence
from retrospec.issues.queries import busy_issues, failures_since, get_issue, list_issues
from retrospec.jobs.context import JobContext, JobResult
from retrospec.settings import Settings

log = logging.getLogger(__name__)

WORKERS = 4  # rules delivered at once
BATCH = 200  # rows looked at per run
LEASE_FLOOR_MS = 60_000
MAX_BACKOFF_S = 3600.0
PRUNE_EVERY_S = 3600.0
_last_prune = 0.0  # process-local: pruning is housekeeping, once an hour is plenty


def lease_ms(settings: Settings) -> int:
    """How long a claim lasts: longer than the slowest send (connect, TLS, login, data)."""
    return max(LEASE_FLOOR_MS, int(settings.alert_timeout_seconds * 6000))


def backoff_ms(settings: Settings, attempts: int, retry_after: float | None = None) -> int:
    """alert_retry_seconds doubled per attempt, at least what the receiver asked, at most 1 h."""
    seconds = settings.alert_retry_seconds * 2 ** max(0, attempts - 1)
    if retry_after is not None:
        seconds = max(seconds, retry_after)
    return int(min(seconds, MAX_BACKOFF_S) * 1000)


def _host(settings: Settings) -> str:
    host = urlsplit(settings.base_url).hostname or "localhost"
    return "localhost" if host.replace(".", "").isdigit() or ":" in host else host


def sender(settings: Settings) -> str:
    """The From address: smtp_from, else retrospec@<public_url's host>."""
    return settings.smtp_from or f"retrospec@{_host(settings)}"


def message_id(settings: Settings, delivery_id: str) -> str:
    """A Message-ID that is the same for every attempt of one outbox row."""
    digest = hashlib.sha256(delivery_id.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}.alert@{_host(settings)}>"


# --- composing ---------------------------------------------------------------------------------


def compose(conn: sqlite3.Connection, settings: Settings, row: OutboxRow) -> Notice:
    """The message for an outbox row, from the issue as it is now (NotFound if it is gone)."""
    base = settings.base_url
    if row.event == "digest":
        members = outbox.digest_members(conn, row.id)
        alerts: list[IssueAlert] = []
        for member in members[:DIGEST_LINES]:
            if member.cluster_id is None:
                continue
            try:
                issue = get_issue(conn, member.cluster_id)
            except NotFound:
                continue
            alerts.append(summary_alert(issue, member.event, base))
        window = float(row.detail.get("window_ms", settings.alert_digest_minutes * 60_000))
        return Digest(
            alerts=tuple(alerts),
            window_minutes=round(window / 60_000, 1),
            dashboard_url=f"{base.rstrip('/')}/",
            total=len(members),
        )
    if row.cluster_id is None:
        raise NotFound("the alert names no issue")
    ev = get_evidence(conn, row.cluster_id)
    spike_failures = spike_minutes = None
    if row.event == "spike":
        window_ms = int(row.detail.get("window_ms", settings.spike_window_minutes * 60_000))
        spike_failures = failures_since(conn, row.cluster_id, row.created_at - window_ms)
        spike_minutes = round(window_ms / 60_000, 1)
    return issue_alert(
        ev,
        row.event,
        base,
        first_release=first_release(conn, row.cluster_id),
        spike_failures=spike_failures,
        spike_minutes=spike_minutes,
    )


def send(settings: Settings, rule: AlertRule, notice: Notice, delivery_id: str) -> Outcome:
    """One attempt to deliver a notice through a rule's channel (blocks on the network)."""
    timeout = settings.alert_timeout_seconds
    if rule.channel == "email":
        if not settings.smtp_url:
            return Outcome(
                "retry", "smtp_url is not set (settings file, RETROSPEC_SMTP_URL or --smtp-url)"
            )
        try:
            config = parse_smtp_url(settings.smtp_url)
        except ConfigError as exc:
            return Outcome("retry", exc.message)
        rendered = email(notice, rule.id)
        return send_email(
            config,
            sender=sender(settings),
            to=rule.target,
            subject=rendered.subject,
            text=rendered.text,
            message_id=message_id(settings, delivery_id),
            timeout=timeout,
        )
    rendered = webhook(
        notice,
        fmt=rule.format,
        rule_id=rule.id,
        secret=rule.secret,
        delivery_id=delivery_id,
        sent_at=now_ms(),
    )
    return post_webhook(rule.target, rendered.body, rendered.headers, timeout)


def _attempt(
    conn: sqlite3.Connection, settings: Settings, rule: AlertRule, row: OutboxRow
) -> Outcome:
    try:
        notice = compose(conn, settings, row)
    except NotFound as exc:
        return Outcome("failed", f"nothing to send: {exc.message}")
    except Exception as exc:
        log.exception("composing alert %s failed", row.id)
        return Outcome("retry", f"could not compose the message: {type(exc).__name__}")
    try:
        return send(settings, rule, notice, row.dedupe_key)
    except Exception as exc:  # a bug, not the receiver: keep the row and say so
        log.exception("sending alert %s failed", row.id)
        return Outcome("retry", f"{type(exc).__name__}: {exc}")


def send_test(
    conn: sqlite3.Connection,
    settings: Settings,
    rule: AlertRule,
    write: Callable[[Callable[[sqlite3.Connection], Any]], Any],
) -> Outcome:
    """`alerts test`: send a sample now (the newest open issue in the rule's scope if there is
    one, else a made-up one) and log the attempt through write. conn may be read-only; the
    send happens outside any transaction."""
    items, _ = list_issues(conn, site=rule.site_id, status="open", limit=1)
    notice: Notice
    if items:
        ev = get_evidence(conn, items[0].id)
        notice = issue_alert(
            ev, "test", settings.base_url, first_release=first_release(conn, items[0].id)
        )
    else:
        notice = sample_alert(rule.site_name or "all sites", settings.base_url)
    outcome = send(settings, rule, notice, f"test:{rule.id}:{now_ms()}")
    write(
        functools.partial(
            outbox.log_delivery,
            outbox_id=None,
            rule_id=rule.id,
            cluster_id=items[0].id if items else None,
            event="test",
            attempt=1,
            outcome=outcome.kind,
            detail=outcome.detail,
            at=now_ms(),
            duration_ms=outcome.duration_ms,
        )
    )
    return outcome


# --- the job -----------------------------------------------------------------------------------


def _store(
    conn: sqlite3.Connection,
    *,
    row: OutboxRow,
    kind: str,
    detail: str,
    now: int,
    retry_at: int | None,
    duration_ms: int,
) -> bool:
    done = outbox.record(
        conn, row, kind, detail, now=now, retry_at=retry_at, duration_ms=duration_ms
    )
    if retry_at is not None:
        outbox.hold_rule(conn, row.rule_id, retry_at)
    return done


def _deliver_rule(
    ctx: JobContext,
    rule: AlertRule,
    rows: list[OutboxRow],
    write: Callable[[Callable[[sqlite3.Connection], Any]], Any],
    lease: int,
) -> Counter[str]:
    tally: Counter[str] = Counter()
    settings = ctx.settings
    reader = ctx.reader()
    try:
        for row in rows:
            if ctx.stop.is_set():
                break
            claim = functools.partial(outbox.claim, row_id=row.id, now=now_ms(), lease_ms=lease)
            claimed: OutboxRow | None = write(claim)
            if claimed is None:
                continue  # another process has it, or it is no longer due
            outcome = _attempt(reader, settings, rule, claimed)
            now = now_ms()
            kind, detail, retry_at = outcome.kind, outcome.detail, None
            if kind == "retry":
                if claimed.attempts >= settings.alert_max_attempts:
                    kind, detail = "failed", f"gave up after {claimed.attempts} attempts: {detail}"
                else:
                    retry_at = now + backoff_ms(settings, claimed.attempts, outcome.retry_after)

            store = functools.partial(
                _store,
                row=claimed,
                kind=kind,
                detail=detail,
                now=now,
                retry_at=retry_at,
                duration_ms=outcome.duration_ms,
            )
            if not write(store):
                log.warning("alert %s: the claim was lost while sending", claimed.id)
            tally[kind] += 1
            if kind == "sent":
                log.info("alert %s (%s) sent to %s", claimed.id, claimed.event, rule.description)
            else:
                log.warning("alert %s to %s: %s (%s)", claimed.id, rule.description, kind, detail)
            if kind == "retry":
                break  # this receiver is down: the rule's other rows wait for the backoff
    finally:
        reader.close()
    return tally


def run(ctx: JobContext) -> JobResult:
    """Queue spikes, fold floods into digests, then deliver every due alert."""
    global _last_prune
    settings = ctx.settings
    delay = int(settings.alert_delay_seconds * 1000)
    lease = int(ctx.options.get("lease_ms", lease_ms(settings)))
    lock = threading.Lock()

    def write(fn: Callable[[sqlite3.Connection], Any]) -> Any:
        # Rule threads share one writer; the CLI's writer is a single connection.
        with lock:
            return ctx.write(fn)

    spikes = digests = 0
    reader = ctx.reader()
    try:
        now = now_ms()
        if outbox.spike_rules_exist(reader):
            window = int(settings.spike_window_minutes * 60_000)
            busy = busy_issues(reader, now - window, settings.spike_threshold)
            if busy:
                spikes = write(
                    functools.partial(outbox.enqueue_spikes, spikes=busy, now=now, window_ms=window)
                )
        if outbox.digest_candidates(reader, now, delay):
            digests = write(
                functools.partial(
                    outbox.form_digests,
                    now=now,
                    delay_ms=delay,
                    threshold=settings.alert_digest_threshold,
                    window_ms=int(settings.alert_digest_minutes * 60_000),
                )
            )
        due = outbox.due_rows(reader, now_ms(), delay, limit=BATCH)
        rules = rules_by_id(reader) if due else {}
    finally:
        reader.close()
    by_rule: dict[int, list[OutboxRow]] = {}
    for row in due:
        if row.rule_id in rules:
            by_rule.setdefault(row.rule_id, []).append(row)
    tally: Counter[str] = Counter()
    if by_rule:
        with ThreadPoolExecutor(
            max_workers=min(WORKERS, len(by_rule)), thread_name_prefix="retrospec-alerts"
        ) as pool:
            futures = [
                pool.submit(_deliver_rule, ctx, rules[rid], rows, write, lease)
                for rid, rows in by_rule.items()
            ]
            for future in futures:
                tally.update(future.result())
    pruned = 0
    if time.monotonic() - _last_prune > PRUNE_EVERY_S:
        pruned = int(write(functools.partial(outbox.prune, now=now_ms())))
        _last_prune = time.monotonic()
    result = JobResult(items=tally["sent"])
    result.details = {
        "sent": tally["sent"],
        "retrying": tally["retry"],
        "failed": tally["failed"],
        "digests": digests,
        "spikes": spikes,
        "pruned": pruned,
    }
    result.message = (
        f"sent {tally['sent']}, retrying {tally['retry']}, failed {tally['failed']} "
        f"({digests} digests, {spikes} spikes)"
    )
    return result
