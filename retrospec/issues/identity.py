"""Which cluster a fingerprinted failure joins: its key, an alias, an older rules' key, a merge.

The rule (README "Grouping"), in order:
1. During a grouping transition (`grouping_transition_days` after an upgrade of the rules) a
   failure also carries its hashes under the older rules that clusters still use. A cluster
   created under an older version whose fingerprint is such a hash wins: the failures that
   reached an old issue still reach it, so a new version never re-keys an issue. The failure's
   current key then becomes an alias of that cluster, so later failures find it directly.
2. Else the cluster whose own fingerprint is the current key, or which has it as an alias.
3. Else, for an engine error naming a property without a source map, the cluster that already
   failed at the same exact position (deployed file, line, column): the same expression failing
   with another property name (`record[field]`) is the same bug. Its key becomes an alias there,
   so the other deploys' failures with that property find it too.
4. Else nothing: the caller creates a new cluster (a candidate) under the current version; it
   records the positions of its failures (cluster_positions).
A merged cluster hands whatever reaches it to the cluster it was merged into (issues/merge.py).

Upgrade (once per new GROUPING_VERSION, run by the cluster job before new failures): promoted
clusters of older versions get the current keys of their retained failures as aliases (when two
share a key, the older issue keeps it); candidates of older versions are dissolved, their
failures grouped again under the current rules (a candidate some of whose failures lost their
payload to retention stays as it is, still found by its old key during the transition).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from retrospec.issues.fingerprint import GROUPING_VERSION
from retrospec.storage.db import insert_rows

META_VERSION = "grouping_version"  # the version whose upgrade finished
META_UPGRADED_AT = "grouping_upgraded_at"  # when it finished (epoch ms)
DAY_MS = 86_400_000
_CHUNK = 400  # bound on bound parameters per statement


@dataclass(frozen=True, slots=True)
class Key:
    """A failure's keys: its site, current fingerprint and older-version hashes."""

    site_id: str
    fingerprint: str
    legacy: tuple[str, ...] = ()
    position: str | None = None  # see Fingerprint.position


@dataclass(slots=True)
class Resolution:
    """Where each key of a batch goes (index -> cluster id) and the aliases to record."""

    clusters: dict[int, int] = field(default_factory=dict)
    aliases: list[tuple[str, str, int]] = field(default_factory=list)  # site, fingerprint, id


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _pairs_in(
    conn: sqlite3.Connection, sql: str, pairs: Sequence[tuple[str, str]], *extra: Any
) -> list[Any]:
    """Run `sql` over (site, text) pairs in chunks; `sql` joins the table to `k(a, b)`.

    A join from a VALUES list is planned as index lookups; `(a, b) IN (VALUES ...)` scanned the
    whole table on SQLite 3.40 (quadratic once a site has many clusters; see ingest/write.py).
    """
    out: list[Any] = []
    for chunk in _chunks(pairs):
        values = ",".join("(?, ?)" for _ in chunk)
        params = tuple(x for pair in chunk for x in pair)
        query = f"WITH k(a, b) AS (VALUES {values}) {sql}"
        out.extend(conn.execute(query, (*params, *extra)).fetchall())
    return out


def final_targets(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, int]:
    """Cluster id -> the cluster it was merged into (merges are kept one level deep)."""
    wanted = sorted(set(ids))
    out: dict[int, int] = {}
    for chunk in _chunks(wanted):
        marks = ",".join("?" * len(chunk))
        for cid, target in conn.execute(
            f"SELECT id, merged_into FROM clusters WHERE id IN ({marks}) "
            "AND merged_into IS NOT NULL",
            tuple(chunk),
        ):
            out[int(cid)] = int(target)
    return out


def resolve(conn: sqlite3.Connection, keys: Sequence[Key]) -> Resolution:
    """Find the existing cluster of each key (rule 1-2 above); unresolved keys are left out."""
    res = Resolution()
    legacy_pairs = sorted({(k.site_id, h) for k in keys for h in k.legacy})
    old: dict[tuple[str, str], int] = {}
    if legacy_pairs:
        for cid, site_id, fp in _pairs_in(
            conn,
            "SELECT c.id, c.site_id, c.fingerprint FROM k JOIN clusters c "
            "ON c.site_id = k.a AND c.fingerprint = k.b WHERE c.grouping_version < ?",
            legacy_pairs,
            GROUPING_VERSION,
        ):
            old[(site_id, fp)] = int(cid)
    current_pairs = sorted({(k.site_id, k.fingerprint) for k in keys})
    found: dict[tuple[str, str], int] = {}
    for cid, site_id, fp in _pairs_in(
        conn,
        "SELECT c.cluster_id, c.site_id, c.fingerprint FROM k JOIN cluster_aliases c "
        "ON c.site_id = k.a AND c.fingerprint = k.b",
        current_pairs,
    ):
        found[(site_id, fp)] = int(cid)
    for cid, site_id, fp in _pairs_in(
        conn,
        "SELECT c.id, c.site_id, c.fingerprint FROM k JOIN clusters c "
        "ON c.site_id = k.a AND c.fingerprint = k.b",
        current_pairs,
    ):
        found[(site_id, fp)] = int(cid)  # a cluster's own fingerprint beats an alias
    position_pairs = sorted({(k.site_id, k.position) for k in keys if k.position})
    at: dict[tuple[str, str], int] = {}
    for cid, site_id, position in _pairs_in(
        conn,
        "SELECT c.cluster_id, c.site_id, c.position FROM k JOIN cluster_positions c "
        "ON c.site_id = k.a AND c.position = k.b",
        position_pairs,
    ):
        at[(site_id, position)] = int(cid)
    for i, k in enumerate(keys):
        hit = next((old[(k.site_id, h)] for h in k.legacy if (k.site_id, h) in old), None)
        current = (k.site_id, k.fingerprint)
        if hit is None and current not in found and k.position:
            hit = at.get((k.site_id, k.position))
        if hit is not None:
            res.clusters[i] = hit
            if current not in found:
                found[current] = hit  # later keys of this batch follow it too
                res.aliases.append((k.site_id, k.fingerprint, hit))
        elif current in found:
            res.clusters[i] = found[current]
        if i in res.clusters and k.position:
            at.setdefault((k.site_id, k.position), res.clusters[i])  # later keys of this batch
    merged = final_targets(conn, res.clusters.values())
    res.clusters = {i: merged.get(cid, cid) for i, cid in res.clusters.items()}
    return res


def add_aliases(conn: sqlite3.Connection, aliases: Sequence[tuple[str, str, int]], now: int) -> int:
    """Record fingerprints that lead to clusters; a fingerprint already taken keeps its cluster."""
    if not aliases:
        return 0
    return insert_rows(
        conn,
        "INSERT INTO cluster_aliases (site_id, fingerprint, cluster_id, grouping_version, "
        "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (site_id, fingerprint) DO NOTHING",
        [(site, fp, cid, GROUPING_VERSION, now) for site, fp, cid in aliases],
    )


def add_positions(
    conn: sqlite3.Connection, positions: Sequence[tuple[str, str, int]], now: int
) -> None:
    """Record where clusters failed (site, position, cluster); a known position keeps its own."""
    insert_rows(
        conn,
        "INSERT INTO cluster_positions (site_id, position, cluster_id, created_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (site_id, position) DO NOTHING",
        [(site, position, cid, now) for site, position, cid in positions],
    )


def aliases_of(conn: sqlite3.Connection, cluster_id: int) -> list[str]:
    """The fingerprints recorded as aliases of one cluster."""
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT fingerprint FROM cluster_aliases WHERE cluster_id = ? ORDER BY fingerprint",
            (int(cluster_id),),
        )
    ]


# --- versions and the upgrade ----------------------------------------------------------------


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def upgraded_version(conn: sqlite3.Connection) -> int:
    """The grouping version whose upgrade finished (1 for data from before versions existed)."""
    value = _meta(conn, META_VERSION)
    return int(value) if value and value.isdigit() else 1


def legacy_versions(conn: sqlite3.Connection, transition_days: float, now: int) -> tuple[int, ...]:
    """Older versions whose keys new failures should also carry (empty after the transition)."""
    at = _meta(conn, META_UPGRADED_AT)
    if at is None or not at.isdigit() or now - int(at) > transition_days * DAY_MS:
        return ()
    return tuple(
        int(r[0])
        for r in conn.execute(
            "SELECT DISTINCT grouping_version FROM clusters WHERE grouping_version < ? "
            "ORDER BY grouping_version DESC",
            (GROUPING_VERSION,),
        )
    )


def finish_upgrade(conn: sqlite3.Connection, now: int) -> None:
    """Record that the current version's upgrade is done (runs on the writer)."""
    for key, value in ((META_VERSION, str(GROUPING_VERSION)), (META_UPGRADED_AT, str(now))):
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def old_issues(conn: sqlite3.Connection, after_id: int, limit: int) -> list[int]:
    """Promoted clusters of older versions (not merged away), by id, for alias backfill."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM clusters WHERE grouping_version < ? AND id > ? "
            "AND status IN ('open', 'resolved', 'ignored') ORDER BY id LIMIT ?",
            (GROUPING_VERSION, after_id, limit),
        )
    ]


def old_candidates(conn: sqlite3.Connection, after_id: int, limit: int) -> list[int]:
    """Candidates of older versions that can be grouped again: every failure kept its payload
    and nothing was merged into them."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT c.id FROM clusters c WHERE c.grouping_version < ? AND c.id > ? "
            "AND c.status = 'candidate' "
            "AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.cluster_id = c.id "
            "AND f.payload IS NULL) "
            "AND NOT EXISTS (SELECT 1 FROM clusters m WHERE m.merged_into = c.id) "
            "ORDER BY c.id LIMIT ?",
            (GROUPING_VERSION, after_id, limit),
        )
    ]


def dissolve(conn: sqlite3.Connection, cluster_ids: Sequence[int]) -> int:
    """Unclaim the failures of old candidates and delete them (runs on the writer); the cluster
    job then groups those failures again. Returns the failures released."""
    released = 0
    for chunk in _chunks(list(cluster_ids)):
        marks = ",".join("?" * len(chunk))
        # Re-checked under the write lock: a candidate promoted meanwhile is an issue now.
        ids = tuple(
            int(r[0])
            for r in conn.execute(
                f"SELECT id FROM clusters WHERE id IN ({marks}) AND status = 'candidate' "
                "AND grouping_version < ?",
                (*chunk, GROUPING_VERSION),
            )
        )
        if not ids:
            continue
        marks = ",".join("?" * len(ids))
        released += conn.execute(
            f"UPDATE failures SET cluster_id = NULL, fingerprint = NULL "
            f"WHERE cluster_id IN ({marks})",
            ids,
        ).rowcount
        conn.execute(f"DELETE FROM clusters WHERE id IN ({marks})", ids)
    return released
