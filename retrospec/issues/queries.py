"""Issues: the read API over clusters (list, one issue, daily counts) and the lifecycle actions.

A cluster is a `candidate` until the cluster job promotes it (see issues/clustering.py); from
then on it is an issue (same id) that moves open -> resolved | ignored -> open. Reads are plain
functions of a connection (the dashboard awaits them through its ReadPool, the CLI calls them);
change_status runs on the writer. Reads only touch clusters and their small side tables, never
COUNT over failures, so the list stays fast at 10,000 issues and 1,000,000 failures.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from retrospec.clock import day_of
from retrospec.clock import now_ms as _now_ms
from retrospec.errors import BadRequest, NotFound
from retrospec.sites import get_site

STATUSES = ("open", "resolved", "ignored", "candidate", "all")
ISSUE_STATUSES = ("open", "resolved", "ignored")  # "all" = every promoted issue
SORTS = {
    "last_seen": "c.last_seen_at DESC, c.id DESC",
    "failures": "c.failure_count DESC, c.id DESC",
    "sessions": "c.session_count DESC, c.id DESC",
    "first_seen": "c.first_seen_at DESC, c.id DESC",
}
MAX_LIMIT = 1000

# action -> (statuses it applies to, new status, issue_events action)
ACTIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "resolve": (("open", "ignored"), "resolved", "resolved"),
    "ignore": (("open", "resolved"), "ignored", "ignored"),
    "reopen": (("resolved", "ignored"), "open", "reopened"),
}


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """One issue (or candidate cluster) as lists show it."""

    id: int
    site_id: str
    site_name: str
    kind: str
    title: str
    culprit: str | None
    status: str
    regression: bool
    failure_count: int
    session_count: int
    user_count: int
    first_seen_at: int
    last_seen_at: int


_SUMMARY_COLUMNS = (
    "c.id, c.site_id, s.name, c.kind, c.title, c.culprit, c.status, c.regression, "
    "c.failure_count, c.session_count, c.user_count, c.first_seen_at, c.last_seen_at"
)


def _summary(row: Any) -> IssueSummary:
    return IssueSummary(
        id=int(row[0]),
        site_id=str(row[1]),
        site_name=str(row[2]),
        kind=str(row[3]),
        title=str(row[4]),
        culprit=row[5],
        status=str(row[6]),
        regression=bool(row[7]),
        failure_count=int(row[8]),
        session_count=int(row[9]),
        user_count=int(row[10]),
        first_seen_at=int(row[11]),
        last_seen_at=int(row[12]),
    )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_issues(
    conn: sqlite3.Connection,
    *,
    site: str | None = None,
    status: str = "open",
    kind: str | None = None,
    q: str | None = None,
    sort: str = "last_seen",
    limit: int = 50,
    offset: int = 0,
    before: tuple[int, int] | None = None,
) -> tuple[list[IssueSummary], int]:
    """One page of issues plus the total matching; status "all" excludes candidates.

    before = (last_seen_at, id) of the previous page's last row pages by keyset instead of
    offset (the JSON API's cursor): rows that move while paging are neither skipped twice nor
    repeated. It needs sort "last_seen"; the total still counts every match.
    """
    if status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    limit = max(1, min(int(limit), MAX_LIMIT))
    offset = max(0, int(offset))
    where: list[str] = []
    params: list[Any] = []
    if site:
        where.append("c.site_id = ?")
        params.append(get_site(conn, site).id)
    if status == "all":
        where.append("c.status IN ('open', 'resolved', 'ignored')")
    else:
        where.append("c.status = ?")
        params.append(status)
    if kind:
        where.append("c.kind = ?")
        params.append(kind)
    if q and q.strip():
        pattern = _like(q.strip())
        where.append("(c.title LIKE ? ESCAPE '\\' OR c.culprit LIKE ? ESCAPE '\\')")
        params += [pattern, pattern]
    clause = " AND ".join(where)
    page_clause, page_params = clause, list(params)
    if before is not None:
        if sort != "last_seen":
            raise BadRequest("a cursor pages issues by last_seen only")
        page_clause += " AND (c.last_seen_at < ? OR (c.last_seen_at = ? AND c.id < ?))"
        page_params += [int(before[0]), int(before[0]), int(before[1])]
    # Late row lookup: pick the page's ids from the (status, sort key) indexes first, then read
    # only those rows, so sorting and offsets never drag every issue's full row along.
    rows = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM (SELECT c.id FROM clusters c WHERE {page_clause} "
        f"ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?) page "
        f"JOIN clusters c ON c.id = page.id JOIN sites s ON s.id = c.site_id "
        f"ORDER BY {SORTS[sort]}",
        (*page_params, limit, offset),
    ).fetchall()
    items = [_summary(r) for r in rows]
    if before is None and len(items) < limit and (items or offset == 0):
        total = offset + len(items)  # the last page tells the total: skip the count query
    else:
        count = list(
            conn.execute(f"SELECT count(*) FROM clusters c WHERE {clause}", params).fetchall()
        )
        total = int(count[0][0])
    return items, total


def get_issue(conn: sqlite3.Connection, issue_id: int) -> IssueSummary:
    """One issue or candidate by id (errors.NotFound)."""
    rows = list(
        conn.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM clusters c JOIN sites s ON s.id = c.site_id "
            "WHERE c.id = ?",
            (int(issue_id),),
        ).fetchall()
    )
    if not rows:
        raise NotFound(f"no issue {issue_id}")
    return _summary(rows[0])


def daily_counts(
    conn: sqlite3.Connection, ids: Iterable[int], *, days: int = 7, now_ms: int | None = None
) -> dict[int, list[int]]:
    """Failures per UTC day for each issue, oldest first and today last (for sparklines)."""
    wanted = sorted({int(i) for i in ids})
    days = max(1, int(days))
    today = day_of(_now_ms() if now_ms is None else now_ms)
    first = today - days + 1
    out = {i: [0] * days for i in wanted}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for cid, day, count in conn.execute(
            f"SELECT cluster_id, day, count FROM cluster_days WHERE cluster_id IN ({marks}) "
            "AND day BETWEEN ? AND ?",
            (*chunk, first, today),
        ).fetchall():
            out[int(cid)][int(day) - first] = int(count)
    return out


def change_status(
    conn: sqlite3.Connection, issue_id: int, action: str, actor: str | None = None
) -> str:
    """Resolve, ignore or reopen an issue (runs on the writer); returns the new status."""
    if action not in ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    row = conn.execute("SELECT status FROM clusters WHERE id = ?", (int(issue_id),)).fetchone()
    if row is None:
        raise NotFound(f"no issue {issue_id}")
    current = str(row[0])
    allowed, new, event = ACTIONS[action]
    if current == "candidate":
        raise BadRequest(f"issue {issue_id} is still a candidate (not enough similar failures yet)")
    if current not in allowed:
        raise BadRequest(f"issue {issue_id} is already {current}")
    now = _now_ms()
    # Resolving also clears the regression flag (it is handled); it comes back if it recurs.
    conn.execute(
        "UPDATE clusters SET status = ?, resolved_at = ?, ignored_at = ?, "
        "regression = CASE WHEN ? THEN 0 ELSE regression END, updated_at = ? WHERE id = ?",
        (
            new,
            now if new == "resolved" else None,
            now if new == "ignored" else None,
            new == "resolved",
            now,
            int(issue_id),
        ),
    )
    conn.execute(
        "INSERT INTO issue_events (cluster_id, at, action, actor) VALUES (?, ?, ?, ?)",
        (int(issue_id), now, event, actor),
    )
    return new


def busy_issues(
    conn: sqlite3.Connection, since: int, threshold: int, limit: int = 200
) -> list[tuple[int, str, int]]:
    """(id, site_id, failures) of open issues with at least threshold failures received since
    `since`: the spike candidates. Counts stop at threshold, so a hot issue costs at most
    threshold index entries (the exact number is counted once, when an alert is written)."""
    threshold = max(1, int(threshold))
    candidates = conn.execute(
        "SELECT id, site_id FROM clusters WHERE status = 'open' AND last_seen_at >= ? "
        "AND failure_count >= ? ORDER BY last_seen_at DESC LIMIT ?",
        (since, threshold, limit),
    ).fetchall()
    out: list[tuple[int, str, int]] = []
    for cid, site_id in candidates:
        (count,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM failures WHERE cluster_id = ? "
            "AND received_at >= ? LIMIT ?) recent",
            (cid, since, threshold),
        ).fetchone()
        if int(count) >= threshold:
            out.append((int(cid), str(site_id), int(count)))
    return out


def failures_since(conn: sqlite3.Connection, issue_id: int, since: int) -> int:
    """How many failures of an issue were received since `since` (for a spike alert's text)."""
    row = conn.execute(
        "SELECT count(*) FROM failures WHERE cluster_id = ? AND received_at >= ?",
        (int(issue_id), since),
    ).fetchone()
    return int(row[0])
