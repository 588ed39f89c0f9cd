"""The alert outbox and delivery log: every message to send is a row before anything is sent.

Promotions and regressions call enqueue() inside the cluster job's transaction, so an alert
exists exactly when its state change does (both commit or neither). The deliver job then moves
each row pending -> sending (a claim with a lease: attempts + 1, due_at = lease end) -> sent |
pending again (retry, due_at = backoff) | failed, writing one alert_deliveries row per attempt
in the same transaction as the outcome. A claim whose process died is taken over when its lease
ends, with the same dedupe_key, which receivers see as the message's idempotency key.

Flood control (form_digests): when a rule got more than `threshold` alerts within `window`, its
fresh pending rows become one digest row (they are marked digested and point at it), and at most
one digest per rule and window is formed; later rows wait for the window to pass.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retrospec.alerts.rules import rules_by_id

DETAIL_CHARS = 500
# Kept for `alerts log` and the spike rate limit; then pruned.
KEEP_MS = 30 * 86_400_000


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One queued message."""

    id: int
    rule_id: int
    cluster_id: int | None
    event: str  # promoted | regression | spike | digest
    dedupe_key: str
    detail: dict[str, Any]
    created_at: int
    status: str
    due_at: int
    attempts: int


_COLUMNS = (
    "id, rule_id, cluster_id, event, dedupe_key, detail, created_at, status, due_at, attempts"
)


def _row(r: sqlite3.Row | tuple[Any, ...]) -> OutboxRow:
    return OutboxRow(
        id=int(r[0]),
        rule_id=int(r[1]),
        cluster_id=None if r[2] is None else int(r[2]),
        event=str(r[3]),
        dedupe_key=str(r[4]),
        detail=json.loads(r[5]) if r[5] else {},
        created_at=int(r[6]),
        status=str(r[7]),
        due_at=int(r[8]),
        attempts=int(r[9]),
    )


_INSERT = (
    "INSERT INTO alert_outbox (rule_id, cluster_id, event, dedupe_key, detail, created_at, "
    "due_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING"
)


def enqueue(conn: sqlite3.Connection, events: Sequence[tuple[int, str, str]], now: int) -> int:
    """Queue (issue id, site id, event) for every matching rule; call inside the transaction
    that makes the change. Returns the rows written."""
    if not events:
        return 0
    rules = rules_by_id(conn)
    if not rules:
        return 0
    rows = []
    for cid, site_id, event in events:
        for rule in rules.values():
            if rule.matches(site_id, event):
                # A promotion happens once per issue; a regression once per resolve.
                key = f"{event}:{cid}:{rule.id}" + ("" if event == "promoted" else f":{now}")
                rows.append((rule.id, cid, event, key, None, now, now))
    if not rows:
        return 0
    return int(conn.executemany(_INSERT, rows).rowcount)


def enqueue_spikes(
    conn: sqlite3.Connection, spikes: Sequence[tuple[int, str, int]], now: int, window_ms: int
) -> int:
    """Queue spike alerts for (issue id, site id, failures), at most one per issue and rule
    per window (runs on the writer; the window check is inside the transaction)."""
    rules = [r for r in rules_by_id(conn).values() if "spike" in r.events]
    rows = []
    for cid, site_id, failures in spikes:
        for rule in rules:
            if not rule.matches(site_id, "spike"):
                continue
            recent = conn.execute(
                "SELECT 1 FROM alert_outbox WHERE cluster_id = ? AND event = 'spike' "
                "AND created_at > ? AND rule_id = ? LIMIT 1",
                (cid, now - window_ms, rule.id),
            ).fetchone()
            if recent is None:
                detail = json.dumps({"failures": failures, "window_ms": window_ms})
                key = f"spike:{cid}:{rule.id}:{now}"
                rows.append((rule.id, cid, "spike", key, detail, now, now))
    if not rows:
        return 0
    return int(conn.executemany(_INSERT, rows).rowcount)


def spike_rules_exist(conn: sqlite3.Connection) -> bool:
    """Whether any rule listens for spikes (otherwise the job skips looking for them)."""
    return any("spike" in r.events for r in rules_by_id(conn).values())


def _fresh_clause(now: int, delay_ms: int) -> tuple[str, tuple[int, ...]]:
    # A new alert waits delay_ms (its replay gets built, a burst gets counted); digests and
    # retries are due when due_at says.
    return (
        "due_at <= ? AND (event = 'digest' OR attempts > 0 OR created_at <= ?)",
        (now, now - delay_ms),
    )


def due_rows(
    conn: sqlite3.Connection, now: int, delay_ms: int, limit: int = 200
) -> list[OutboxRow]:
    """Rows ready to send now: pending and due, or claimed by a process whose lease ran out."""
    clause, params = _fresh_clause(now, delay_ms)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alert_outbox WHERE status IN ('pending', 'sending') "
        f"AND {clause} ORDER BY id LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_row(r) for r in rows]


def digest_candidates(conn: sqlite3.Connection, now: int, delay_ms: int) -> dict[int, list[int]]:
    """rule id -> fresh pending rows (never attempted, not digests) that are due now."""
    clause, params = _fresh_clause(now, delay_ms)
    out: dict[int, list[int]] = {}
    for rid, oid in conn.execute(
        "SELECT rule_id, id FROM alert_outbox WHERE status = 'pending' AND attempts = 0 "
        f"AND event != 'digest' AND {clause} ORDER BY id",
        params,
    ):
        out.setdefault(int(rid), []).append(int(oid))
    return out


def form_digests(
    conn: sqlite3.Connection, now: int, delay_ms: int, threshold: int, window_ms: int
) -> int:
    """Fold each flooded rule's fresh rows into one digest row (runs on the writer)."""
    formed = 0
    for rule_id, ids in digest_candidates(conn, now, delay_ms).items():
        (recent,) = conn.execute(
            "SELECT count(*) FROM alert_outbox WHERE rule_id = ? AND event != 'digest' "
            "AND created_at > ?",
            (rule_id, now - window_ms),
        ).fetchone()
        if int(recent) <= threshold:
            continue
        (last,) = conn.execute(
            "SELECT max(created_at) FROM alert_outbox WHERE rule_id = ? AND event = 'digest'",
            (rule_id,),
        ).fetchone()
        marks = ",".join("?" * len(ids))
        if last is not None and int(last) > now - window_ms:
            # One digest per window: the rest wait for the window to end.
            conn.execute(
                f"UPDATE alert_outbox SET due_at = ? WHERE id IN ({marks})",
                (int(last) + window_ms, *ids),
            )
            continue
        detail = json.dumps({"count": len(ids), "window_ms": window_ms})
        (digest_id,) = conn.execute(
            "INSERT INTO alert_outbox (rule_id, cluster_id, event, dedupe_key, detail, "
            "created_at, due_at) VALUES (?, NULL, 'digest', ?, ?, ?, ?) RETURNING id",
            (rule_id, f"digest:{rule_id}:{ids[0]}", detail, now, now),
        ).fetchone()
        conn.execute(
            f"UPDATE alert_outbox SET status = 'digested', digest_id = ? "
            f"WHERE id IN ({marks}) AND status = 'pending' AND attempts = 0",
            (int(digest_id), *ids),
        )
        formed += 1
    return formed


def digest_members(conn: sqlite3.Connection, digest_id: int) -> list[OutboxRow]:
    """The alerts a digest carries, oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alert_outbox WHERE digest_id = ? ORDER BY id", (digest_id,)
    ).fetchall()
    return [_row(r) for r in rows]


def claim(conn: sqlite3.Connection, row_id: int, now: int, lease_ms: int) -> OutboxRow | None:
    """Take a due row for one delivery attempt (runs on the writer); None if another process
    has it or it is no longer due."""
    cur = conn.execute(
        "UPDATE alert_outbox SET status = 'sending', attempts = attempts + 1, due_at = ? "
        "WHERE id = ? AND status IN ('pending', 'sending') AND due_at <= ?",
        (now + lease_ms, row_id, now),
    )
    if cur.rowcount != 1:
        return None
    row = conn.execute(f"SELECT {_COLUMNS} FROM alert_outbox WHERE id = ?", (row_id,)).fetchone()
    return _row(row)


def record(
    conn: sqlite3.Connection,
    row: OutboxRow,
    outcome: str,
    detail: str,
    *,
    now: int,
    retry_at: int | None = None,
    duration_ms: int | None = None,
) -> bool:
    """Store one attempt's outcome (sent | retry | failed) and log it, in one transaction.

    Returns False when the claim was lost meanwhile (the row was removed with its rule, or the
    lease ran out and another process took it over): the log still records the attempt.
    """
    text = detail[:DETAIL_CHARS]
    if outcome == "sent":
        cur = conn.execute(
            "UPDATE alert_outbox SET status = 'sent', sent_at = ?, last_error = NULL "
            "WHERE id = ? AND status = 'sending' AND attempts = ?",
            (now, row.id, row.attempts),
        )
    elif outcome == "retry":
        cur = conn.execute(
            "UPDATE alert_outbox SET status = 'pending', due_at = ?, last_error = ? "
            "WHERE id = ? AND status = 'sending' AND attempts = ?",
            (retry_at if retry_at is not None else now, text, row.id, row.attempts),
        )
    else:
        cur = conn.execute(
            "UPDATE alert_outbox SET status = 'failed', last_error = ? "
            "WHERE id = ? AND status = 'sending' AND attempts = ?",
            (text, row.id, row.attempts),
        )
    log_delivery(
        conn,
        outbox_id=row.id,
        rule_id=row.rule_id,
        cluster_id=row.cluster_id,
        event=row.event,
        attempt=row.attempts,
        outcome=outcome,
        detail=text,
        at=now,
        duration_ms=duration_ms,
    )
    return cur.rowcount == 1


def hold_rule(conn: sqlite3.Connection, rule_id: int, until: int) -> None:
    """After a failed attempt, the rule's other pending rows wait too (one dead receiver costs
    one timeout per backoff step, not one per queued alert)."""
    conn.execute(
        "UPDATE alert_outbox SET due_at = ? WHERE rule_id = ? AND status = 'pending' "
        "AND due_at < ?",
        (until, rule_id, until),
    )


def log_delivery(
    conn: sqlite3.Connection,
    *,
    outbox_id: int | None,
    rule_id: int,
    cluster_id: int | None,
    event: str,
    attempt: int,
    outcome: str,
    detail: str,
    at: int,
    duration_ms: int | None = None,
) -> None:
    """One row of `alerts log` (also written by `alerts test`, with no outbox row)."""
    conn.execute(
        "INSERT INTO alert_deliveries (outbox_id, rule_id, cluster_id, event, attempt, at, "
        "outcome, detail, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (outbox_id, rule_id, cluster_id, event, attempt, at, outcome, detail[:DETAIL_CHARS],
         duration_ms),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Delivery:
    """One logged attempt."""

    id: int
    at: int
    rule_id: int
    cluster_id: int | None
    event: str
    attempt: int
    outcome: str
    detail: str | None
    duration_ms: int | None
    outbox_id: int | None


def list_deliveries(
    conn: sqlite3.Connection, *, limit: int = 50, rule_id: int | None = None
) -> list[Delivery]:
    """The newest delivery attempts first."""
    where, params = ("WHERE rule_id = ?", (rule_id,)) if rule_id is not None else ("", ())
    rows = conn.execute(
        "SELECT id, at, rule_id, cluster_id, event, attempt, outcome, detail, duration_ms, "
        f"outbox_id FROM alert_deliveries {where} ORDER BY id DESC LIMIT ?",
        (*params, max(1, int(limit))),
    ).fetchall()
    return [
        Delivery(
            id=int(r[0]),
            at=int(r[1]),
            rule_id=int(r[2]),
            cluster_id=None if r[3] is None else int(r[3]),
            event=str(r[4]),
            attempt=int(r[5]),
            outcome=str(r[6]),
            detail=r[7],
            duration_ms=None if r[8] is None else int(r[8]),
            outbox_id=None if r[9] is None else int(r[9]),
        )
        for r in rows
    ]


def outbox_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per status (for the dashboard and tests)."""
    return {
        str(status): int(n)
        for status, n in conn.execute("SELECT status, count(*) FROM alert_outbox GROUP BY status")
    }


def prune(conn: sqlite3.Connection, now: int, keep_ms: int = KEEP_MS) -> int:
    """Forget finished alerts and log rows older than keep_ms (runs on the writer)."""
    cutoff = now - keep_ms
    gone = conn.execute(
        "DELETE FROM alert_outbox WHERE created_at < ? "
        "AND status IN ('sent', 'failed', 'digested')",
        (cutoff,),
    ).rowcount
    gone += conn.execute("DELETE FROM alert_deliveries WHERE at < ?", (cutoff,)).rowcount
    return int(gone)
