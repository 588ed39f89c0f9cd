"""Merge issues the grouping rules split, and undo it (runs on the writer, one transaction each).

`merge(target, sources)`: each source's failures move to the target and the source becomes
`merged` (hidden from every list; its page points to the target). Its fingerprint and aliases
stay its own, and the cluster job follows `merged_into`, so failures that would have reached the
source reach the target from then on. Clusters merged earlier into a source now point at the
target directly (merges stay one level deep). The target's counts, sessions, users, facets and
daily counts are recomputed from its failures, so distinct sessions and users stay exact.

`unmerge(target, sources)`: each source gets back the failures whose fingerprint is its own or
one of its aliases (those that arrived after the merge too) and its status from before the
merge; both sides are recomputed from their failures. Clusters that had been merged into the
source before it was merged stay with the target (unmerge them from the target).

Both write an issue_events row on the target and on each source, with the other's id in
`detail`: merged / merged_into, unmerged / unmerged_from.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from retrospec.clock import now_ms
from retrospec.errors import BadRequest, NotFound
from retrospec.issues.clustering import facets_of
from retrospec.issues.identity import aliases_of

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What a merge or unmerge did."""

    target: int
    sources: tuple[int, ...]
    failures_moved: int
    status: str  # the target's status afterwards


def _cluster(conn: sqlite3.Connection, cid: int) -> tuple[str, str, int | None, str | None]:
    """(site_id, status, merged_into, merged_status) of a cluster, or NotFound."""
    row = conn.execute(
        "SELECT site_id, status, merged_into, merged_status FROM clusters WHERE id = ?",
        (int(cid),),
    ).fetchone()
    if row is None:
        raise NotFound(f"no issue {cid}")
    return str(row[0]), str(row[1]), row[2], row[3]


def _event(
    conn: sqlite3.Connection, cid: int, at: int, action: str, actor: str | None, other: int
) -> None:
    conn.execute(
        "INSERT INTO issue_events (cluster_id, at, action, actor, detail) VALUES (?, ?, ?, ?, ?)",
        (cid, at, action, actor, str(other)),
    )


def _sources(target: int, sources: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(int(s) for s in sources))
    if not ids:
        raise BadRequest("name at least one issue to merge")
    if int(target) in ids:
        raise BadRequest(f"issue {target} cannot be merged into itself")
    return ids


def merge(
    conn: sqlite3.Connection, target: int, sources: Sequence[int], actor: str | None = None
) -> MergeResult:
    """Merge `sources` into `target` (see the module docs); all or nothing."""
    target = int(target)
    ids = _sources(target, sources)
    site, status, merged_into, _ = _cluster(conn, target)
    if merged_into is not None:
        raise BadRequest(f"issue {target} is merged into issue {merged_into}; merge into that")
    for source in ids:
        source_site, _status, into, _ = _cluster(conn, source)
        if into is not None:
            raise BadRequest(f"issue {source} is already merged into issue {into}")
        if source_site != site:
            raise BadRequest(f"issue {source} belongs to another site than issue {target}")
    now = now_ms()
    moved = 0
    for source in ids:
        conn.execute(
            "UPDATE clusters SET merged_into = ?, updated_at = ? WHERE merged_into = ?",
            (target, now, source),
        )
        conn.execute(
            "UPDATE clusters SET merged_status = status, status = 'merged', merged_into = ?, "
            "updated_at = ? WHERE id = ?",
            (target, now, source),
        )
        moved += conn.execute(
            "UPDATE failures SET cluster_id = ? WHERE cluster_id = ?", (target, source)
        ).rowcount
        _event(conn, target, now, "merged", actor, source)
        _event(conn, source, now, "merged_into", actor, target)
    recompute(conn, target, now)
    return MergeResult(target, tuple(ids), moved, status)


def unmerge(
    conn: sqlite3.Connection, target: int, sources: Sequence[int], actor: str | None = None
) -> MergeResult:
    """Undo the merge of each of `sources` into `target` (see the module docs); all or nothing."""
    target = int(target)
    ids = _sources(target, sources)
    _site, status, _into, _ = _cluster(conn, target)
    now = now_ms()
    moved = 0
    for source in ids:
        _source_site, _status, into, before = _cluster(conn, source)
        if into != target:
            raise BadRequest(f"issue {source} is not merged into issue {target}")
        own = conn.execute("SELECT fingerprint FROM clusters WHERE id = ?", (source,)).fetchone()
        keys = [str(own[0]), *aliases_of(conn, source)]
        marks = ",".join("?" * len(keys))
        moved += conn.execute(
            f"UPDATE failures SET cluster_id = ? WHERE cluster_id = ? AND fingerprint IN ({marks})",
            (source, target, *keys),
        ).rowcount
        conn.execute(
            "UPDATE clusters SET status = ?, merged_into = NULL, merged_status = NULL, "
            "updated_at = ? WHERE id = ?",
            (before or "candidate", now, source),
        )
        recompute(conn, source, now)
        _event(conn, target, now, "unmerged", actor, source)
        _event(conn, source, now, "unmerged_from", actor, target)
    recompute(conn, target, now)
    return MergeResult(target, tuple(ids), moved, status)


def merged_into(conn: sqlite3.Connection, target: int) -> list[tuple[int, str]]:
    """(id, title) of the clusters merged into `target`, oldest first."""
    return [
        (int(r[0]), str(r[1]))
        for r in conn.execute(
            "SELECT id, title FROM clusters WHERE merged_into = ? ORDER BY id", (int(target),)
        )
    ]


def recompute(conn: sqlite3.Connection, cid: int, now: int) -> None:
    """Rebuild a cluster's counters and side tables from the failures it holds (exact)."""
    conn.execute("DELETE FROM cluster_sessions WHERE cluster_id = ?", (cid,))
    conn.execute(
        "INSERT INTO cluster_sessions (cluster_id, session_id, failures, first_failure_id, "
        "last_seen_at) SELECT cluster_id, session_id, count(*), min(id), max(received_at) "
        "FROM failures WHERE cluster_id = ? GROUP BY cluster_id, session_id",
        (cid,),
    )
    conn.execute("DELETE FROM cluster_users WHERE cluster_id = ?", (cid,))
    conn.execute(
        "INSERT INTO cluster_users (cluster_id, user_key) SELECT DISTINCT cluster_id, user_key "
        "FROM failures WHERE cluster_id = ? AND user_key IS NOT NULL",
        (cid,),
    )
    conn.execute("DELETE FROM cluster_days WHERE cluster_id = ?", (cid,))
    conn.execute(
        "INSERT INTO cluster_days (cluster_id, day, count) SELECT cluster_id, "
        f"received_at / {DAY_MS}, count(*) FROM failures WHERE cluster_id = ? "
        f"GROUP BY cluster_id, received_at / {DAY_MS}",
        (cid,),
    )
    facets: Counter[tuple[str, str]] = Counter()
    for url, browser, os_, release, n in conn.execute(
        "SELECT url, browser, os, release, count(*) FROM failures WHERE cluster_id = ? "
        "GROUP BY url, browser, os, release",
        (cid,),
    ):
        row = {"url": url, "browser": browser, "os": os_, "release": release}
        for pair in facets_of(row):
            facets[pair] += int(n)
    conn.execute("DELETE FROM cluster_facets WHERE cluster_id = ?", (cid,))
    conn.executemany(
        "INSERT INTO cluster_facets (cluster_id, facet, value, count) VALUES (?, ?, ?, ?)",
        [(cid, f, v, n) for (f, v), n in facets.items()],
    )
    # A cluster left without failures keeps its first/last seen; its counts drop to zero.
    conn.execute(
        "UPDATE clusters SET "
        "failure_count = (SELECT count(*) FROM failures WHERE cluster_id = ?), "
        "session_count = (SELECT count(*) FROM cluster_sessions WHERE cluster_id = ?), "
        "user_count = (SELECT count(*) FROM cluster_users WHERE cluster_id = ?), "
        "first_seen_at = coalesce((SELECT min(received_at) FROM failures WHERE cluster_id = ?), "
        "first_seen_at), "
        "last_seen_at = coalesce((SELECT max(received_at) FROM failures WHERE cluster_id = ?), "
        "last_seen_at), "
        # The sample stays while it is still the cluster's (the target keeps its own message).
        "sample_failure_id = coalesce((SELECT f.id FROM failures f "
        "WHERE f.id = clusters.sample_failure_id AND f.cluster_id = ?), "
        "(SELECT max(id) FROM failures WHERE cluster_id = ? AND payload IS NOT NULL), "
        "(SELECT max(id) FROM failures WHERE cluster_id = ?), sample_failure_id), "
        "updated_at = ? WHERE id = ?",
        (cid, cid, cid, cid, cid, cid, cid, cid, now, cid),
    )
