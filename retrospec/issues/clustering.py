"""The cluster job: fingerprint new failures, group them into clusters and promote issues.

Each run pages through failures with `cluster_id IS NULL` (partial index failures_unclustered)
in bounded batches. Fingerprinting happens in the job thread; each batch is then applied by ONE
write function (one transaction) that upserts clusters by (site_id, fingerprint), updates the
counters, facets, daily counts and the sample's frames (cluster_frames), claims the failures and
runs the lifecycle rules. Failures are claimed with `UPDATE ... WHERE id = ? AND cluster_id IS
NULL` after re-reading which of them are still unclaimed inside the transaction, so an
interrupted run leaves nothing behind (the batch rolls back whole) and two overlapping runs (the
scheduler plus `retrospec jobs run cluster`) never count a failure twice.

Promotion rule: a candidate becomes an `open` issue once
    failure_count >= promote_after   AND   session_count >= min(promote_after, 2)
where promote_after is `sites.promote_after` if set, else the `promote_after` setting (default 2).
So with the default, the second similar failure promotes the cluster only when it comes from
another session: one session hitting the same error twice (a render loop, a retry loop, a poll
failing every few seconds) is one bad experience, not evidence that the bug reaches people. The
session rule caps at 2 so that a larger promote_after still means "that many failures", and
promote_after = 1 keeps meaning "every failure is an issue".

Lifecycle: a failure received after an issue was resolved reopens it as a regression (status
open, regression = 1, regressed_at, an issue_events 'regressed' row). Ignored issues stay
ignored while their counts keep growing. Promotions and regressions queue their alerts
(alert_outbox rows, one per matching rule) in the same transaction. Cluster `kind` is the
failure family: error (error, unhandledrejection and custom share clusters), network or console.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec

from retrospec.alerts import outbox
from retrospec.clock import day_of, now_ms
from retrospec.ingest.envelope import PAYLOAD_DECODER
from retrospec.issues import grouping_v1, identity
from retrospec.issues.fingerprint import (
    GROUPING_VERSION,
    FailureInput,
    Fingerprint,
    fingerprint,
    path_template,
)
from retrospec.jobs.context import JobContext, JobResult

log = logging.getLogger(__name__)

FACET_VALUE_CHARS = 300
_CHUNK = 400  # bound on bound parameters per statement (row-value IN lists)

# Test hooks (ctx.options): called with the batch's failure ids.
BEFORE_WRITE = "before_write"  # in the job thread, after fingerprinting, before the write
MIDWAY = "midway"  # inside the write fn, after clusters and failures are written

_SELECT_BATCH = """
SELECT id, site_id, session_id, kind, type, message, url, received_at, method, request_url,
       status, release, browser, os, user_key, payload
FROM failures WHERE cluster_id IS NULL AND id > ? ORDER BY id LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class Item:
    """One fingerprinted failure, ready to be written."""

    id: int
    site_id: str
    session_id: str
    user_key: str | None
    received_at: int
    fingerprint: str
    kind: str
    basis: str
    title: str
    culprit: str | None
    frames: str | None  # JSON list of frame dicts, None without a stack
    facets: tuple[tuple[str, str], ...]
    legacy: tuple[str, ...] = ()  # hashes under older grouping versions (during a transition)
    position: str | None = None  # Fingerprint.position


@dataclass(slots=True)
class BatchStats:
    """What one batch's write did."""

    claimed: int = 0  # failures this run assigned to a cluster
    skipped: int = 0  # failures another run had already assigned
    new_clusters: int = 0
    promoted: list[int] = field(default_factory=list)
    regressed: list[int] = field(default_factory=list)
    aliases: int = 0  # current keys recorded as aliases of clusters of older versions


def frames_json(fp: Fingerprint) -> str | None:
    """The normalised frames of a fingerprint as compact JSON (None without frames)."""
    if not fp.frames:
        return None
    return msgspec.json.encode(
        [
            {
                "function": f.function,
                "path": f.path,
                "raw_file": f.raw_file,
                "line": f.line,
                "column": f.column,
                "in_app": f.in_app,
            }
            for f in fp.frames
        ]
    ).decode("utf-8")


def _facet(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:FACET_VALUE_CHARS] if text else None


@functools.lru_cache(maxsize=1024)
def url_facet(url: str) -> str | None:
    """The `url` facet of a page URL: its path with ids templated and no query or origin."""
    # "/orders/:id" ranks better than 1,000 distinct order pages; pages repeat, hence the cache.
    return _facet(path_template(url)[1])


def facets_of(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (facet, value) pairs a failures row counts toward: browser, os, url, release."""
    url = row["url"]
    pairs = (
        ("browser", _facet(row["browser"])),
        ("os", _facet(row["os"])),
        ("url", url_facet(url) if url else None),
        ("release", _facet(row["release"])),
    )
    return tuple((name, value) for name, value in pairs if value is not None)


def failure_input(row: Mapping[str, Any]) -> FailureInput:
    """Build the fingerprinter's input from a failures row (stack and explicit parts in payload)."""
    stack: str | None = None
    explicit: tuple[str, ...] | None = None
    if row["payload"]:
        try:
            payload = PAYLOAD_DECODER.decode(row["payload"])
        except msgspec.DecodeError:
            payload = None
        if payload is not None:
            stack = payload.stack
            explicit = tuple(payload.fingerprint) if payload.fingerprint else None
    return FailureInput(
        kind=row["kind"],
        type=row["type"],
        message=row["message"],
        stack=stack,
        page_url=_page_origin(row["url"]),
        method=row["method"],
        request_url=row["request_url"],
        status=row["status"],
        explicit=explicit,
    )


def _page_origin(url: str | None) -> str | None:
    # The fingerprinter only reads the page's host (in-app frames, relative request URLs);
    # keeping just the origin lets identical failures on different pages share a cache entry.
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/" if parts.netloc else url


# The same bug in the same deploy and browser produces byte-identical input, which is the common
# case by far (a thousand users hitting one bug); a cache turns repeats into a lookup.
@functools.lru_cache(maxsize=4096)
def _cached_fingerprint(failure: FailureInput) -> Fingerprint:
    return fingerprint(failure)


# The frozen rules of older grouping versions, by version (issues/identity.py says when used).
LEGACY_HASHERS: dict[int, Callable[[FailureInput], str]] = {
    grouping_v1.VERSION: functools.lru_cache(maxsize=4096)(grouping_v1.fingerprint_hash),
}


def _legacy(failure: FailureInput, versions: Sequence[int]) -> tuple[str, ...]:
    return tuple(LEGACY_HASHERS[v](failure) for v in versions if v in LEGACY_HASHERS)


def fingerprint_row(
    row: Mapping[str, Any], legacy_versions: Sequence[int] = ()
) -> tuple[Item, bool]:
    """Fingerprint one failures row (and, in a transition, its older-version hashes); the flag
    is False when it needed the fallback."""
    ok = True
    legacy: tuple[str, ...] = ()
    try:
        failure = failure_input(row)
        fp = _cached_fingerprint(failure)
        legacy = _legacy(failure, legacy_versions)
    except Exception:
        # A fingerprinter bug must not leave the failure unclaimed forever (it would be retried
        # every second); group it by type and message alone and count the error.
        log.exception("fingerprinting failure %s failed; using its message", row["id"])
        ok = False
        fp = fingerprint(FailureInput(kind=row["kind"], type=row["type"], message=row["message"]))
    item = Item(
        id=int(row["id"]),
        site_id=str(row["site_id"]),
        session_id=str(row["session_id"]),
        user_key=row["user_key"],
        received_at=int(row["received_at"]),
        fingerprint=fp.hash,
        kind=fp.family,
        basis=fp.basis,
        title=fp.title,
        culprit=fp.culprit,
        frames=frames_json(fp),
        facets=facets_of(row),
        legacy=legacy,
        position=fp.position,
    )
    return item, ok


def fingerprint_rows(
    rows: list[dict[str, Any]], legacy_versions: Sequence[int] = ()
) -> list[tuple[Item, bool]]:
    """fingerprint_row over a batch (a top-level function, so it can run in a child process)."""
    return [fingerprint_row(row, legacy_versions) for row in rows]


def run(ctx: JobContext) -> JobResult:
    """Cluster every unclustered failure, one bounded batch (one transaction) at a time."""
    batch_size = max(1, int(ctx.options.get("batch_size", ctx.settings.job_batch_size)))
    max_batches = ctx.options.get("max_batches")
    before_write: Callable[[list[int]], None] | None = ctx.options.get(BEFORE_WRITE)
    result = JobResult()
    totals = dict.fromkeys(
        ("claimed", "skipped", "new_clusters", "promoted", "regressed", "aliases"), 0
    )
    last_id = 0
    batches = 0
    reader = ctx.reader()
    try:
        if identity.upgraded_version(reader) < GROUPING_VERSION:
            totals.update(upgrade(ctx, reader, batch_size))
        legacy = identity.legacy_versions(reader, ctx.settings.grouping_transition_days, now_ms())
        while max_batches is None or batches < int(max_batches):
            ctx.check_stop()
            rows = reader.execute(_SELECT_BATCH, (last_id, batch_size)).fetchall()
            if not rows:
                break
            # Fingerprinting is the CPU-heavy part: in the server it runs in the compute
            # process, off the interpreter the event loop uses.
            done: list[tuple[Item, bool]] = ctx.compute(
                fingerprint_rows, [dict(r) for r in rows], legacy
            )
            items = [item for item, _ok in done]
            result.errors += sum(1 for _item, ok in done if not ok)
            last_id = items[-1].id
            if before_write is not None:
                before_write([i.id for i in items])
            write = functools.partial(
                apply_batch,
                items=items,
                promote_after=ctx.settings.promote_after,
                options=ctx.options,
            )
            stats: BatchStats = ctx.write(write)
            batches += 1
            totals["claimed"] += stats.claimed
            totals["skipped"] += stats.skipped
            totals["new_clusters"] += stats.new_clusters
            totals["promoted"] += len(stats.promoted)
            totals["regressed"] += len(stats.regressed)
            totals["aliases"] += stats.aliases
            if len(rows) < batch_size:
                break
    finally:
        reader.close()
    result.items = totals["claimed"]
    result.details = {"batches": batches, "grouping_version": GROUPING_VERSION, **totals}
    result.message = (
        f"clustered {totals['claimed']} failures ({totals['new_clusters']} new clusters, "
        f"{totals['promoted']} promoted, {totals['regressed']} regressions)"
    )
    return result


_UPGRADE_SAMPLE = 20  # newest retained failures per old issue whose current keys become aliases
_SELECT_SAMPLE = """
SELECT id, cluster_id, site_id, session_id, kind, type, message, url, received_at, method,
       request_url, status, release, browser, os, user_key, payload
FROM failures WHERE cluster_id = ? AND payload IS NOT NULL ORDER BY id DESC LIMIT ?
"""


def upgrade(ctx: JobContext, reader: sqlite3.Connection, batch_size: int) -> dict[str, int]:
    """Move the data to the current grouping version (issues/identity.py): aliases for old
    issues, old candidates dissolved for regrouping, then the version recorded. Idempotent."""
    out = {"upgrade_aliases": 0, "upgrade_released": 0}
    after = 0
    while ids := identity.old_issues(reader, after, max(1, batch_size // _UPGRADE_SAMPLE)):
        ctx.check_stop()
        after = ids[-1]
        rows = [
            dict(r) for cid in ids for r in reader.execute(_SELECT_SAMPLE, (cid, _UPGRADE_SAMPLE))
        ]
        owner = {int(r["id"]): cid for cid in ids for r in rows if r["cluster_id"] == cid}
        done: list[tuple[Item, bool]] = ctx.compute(fingerprint_rows, rows, ())
        aliases = [(i.site_id, i.fingerprint, owner[i.id]) for i, _ok in done]
        out["upgrade_aliases"] += ctx.write(
            functools.partial(identity.add_aliases, aliases=aliases, now=now_ms())
        )
    after = 0
    while ids := identity.old_candidates(reader, after, batch_size):
        ctx.check_stop()
        after = ids[-1]
        out["upgrade_released"] += ctx.write(functools.partial(identity.dissolve, cluster_ids=ids))
    ctx.write(functools.partial(identity.finish_upgrade, now=now_ms()))
    return out


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _promote_threshold(
    conn: sqlite3.Connection, site_ids: set[str], default: int
) -> dict[str, int]:
    out = dict.fromkeys(site_ids, default)
    for chunk in _chunks(sorted(site_ids)):
        marks = ",".join("?" * len(chunk))
        for site_id, value in conn.execute(
            f"SELECT id, promote_after FROM sites WHERE id IN ({marks}) "
            "AND promote_after IS NOT NULL",
            tuple(chunk),
        ):
            out[site_id] = max(1, int(value))
    return out


def should_promote(failure_count: int, session_count: int, promote_after: int) -> bool:
    """The promotion rule (see the module docstring)."""
    return failure_count >= promote_after and session_count >= min(promote_after, 2)


def apply_batch(
    conn: sqlite3.Connection,
    items: Sequence[Item],
    promote_after: int,
    options: dict[str, Any] | None = None,
) -> BatchStats:
    """Write one fingerprinted batch (runs on the writer, inside its transaction)."""
    stats = BatchStats()
    if not items:
        return stats
    now = now_ms()
    ids = [i.id for i in items]
    # Inside the write lock: which of these are still unclaimed? (Another run may have won.)
    still = {
        row[0]
        for row in conn.execute(
            "SELECT id FROM failures WHERE cluster_id IS NULL AND id BETWEEN ? AND ?",
            (min(ids), max(ids)),
        )
    }
    todo = [i for i in items if i.id in still]
    stats.skipped = len(items) - len(todo)
    if not todo:
        return stats

    # Which cluster each failure joins (old issues by their old key, then current key or alias).
    res = identity.resolve(
        conn, [identity.Key(i.site_id, i.fingerprint, i.legacy, i.position) for i in todo]
    )
    # Clusters: create the missing ones (counters start at 0; the UPDATE below adds). New
    # failures at one exact position share the cluster of the first (identity.py, rule 3).
    fresh: dict[tuple[str, str], list[Item]] = {}
    leader: dict[tuple[str, str], str] = {}
    for n, item in enumerate(todo):
        if n not in res.clusters:
            fp = item.fingerprint
            if item.position:
                fp = leader.setdefault((item.site_id, item.position), fp)
            fresh.setdefault((item.site_id, fp), []).append(item)
    new_rows = []
    for (site_id, fp), members in fresh.items():
        first = members[0]
        new_rows.append(
            (site_id, fp, first.kind, first.basis, first.title, first.culprit,
             min(m.received_at for m in members), max(m.received_at for m in members),
             first.id, now, GROUPING_VERSION)
        )  # fmt: skip
    stats.new_clusters = conn.executemany(
        "INSERT INTO clusters (site_id, fingerprint, kind, basis, title, culprit, "
        "first_seen_at, last_seen_at, sample_failure_id, updated_at, grouping_version) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, fingerprint) DO NOTHING",
        new_rows,
    ).rowcount
    created: dict[tuple[str, str], int] = {}
    for chunk in _chunks(list(fresh)):
        values = ",".join("(?, ?)" for _ in chunk)
        params = tuple(x for key in chunk for x in key)
        for cid, site_id, fp in conn.execute(
            "SELECT id, site_id, fingerprint FROM clusters "
            f"WHERE (site_id, fingerprint) IN (VALUES {values})",
            params,
        ):
            created[(site_id, fp)] = int(cid)

    def creation_key(item: Item) -> tuple[str, str]:
        if item.position:
            return item.site_id, leader.get((item.site_id, item.position), item.fingerprint)
        return item.site_id, item.fingerprint

    target = [
        res.clusters[n] if n in res.clusters else created[creation_key(i)]
        for n, i in enumerate(todo)
    ]
    # Keys that joined another key's cluster through their position lead there from now on.
    aliases = list(res.aliases)
    aliases += [
        (i.site_id, i.fingerprint, cid)
        for n, (i, cid) in enumerate(zip(todo, target, strict=True))
        if n not in res.clusters and creation_key(i)[1] != i.fingerprint
    ]
    stats.aliases = identity.add_aliases(conn, aliases, now)
    identity.add_positions(
        conn,
        [(i.site_id, i.position, cid) for i, cid in zip(todo, target, strict=True) if i.position],
        now,
    )
    groups: dict[int, list[Item]] = {}
    for item, cid in zip(todo, target, strict=True):
        groups.setdefault(cid, []).append(item)
    cluster_of: dict[int, tuple[str, int | None]] = {}
    for chunk in _chunks(list(groups)):
        marks = ",".join("?" * len(chunk))
        for cid, status, resolved_at in conn.execute(
            f"SELECT id, status, resolved_at FROM clusters WHERE id IN ({marks})", tuple(chunk)
        ):
            cluster_of[int(cid)] = (str(status), resolved_at)

    # Claim the failures; the extra `cluster_id IS NULL` makes a double claim impossible.
    claimed = conn.executemany(
        "UPDATE failures SET fingerprint = ?, cluster_id = ? WHERE id = ? AND cluster_id IS NULL",
        [(i.fingerprint, cid, i.id) for i, cid in zip(todo, target, strict=True)],
    ).rowcount
    if claimed != len(todo):  # impossible under the write lock; roll back rather than miscount
        raise RuntimeError(f"claimed {claimed} of {len(todo)} failures; batch rolled back")
    stats.claimed = claimed
    hook = (options or {}).get(MIDWAY)
    if hook is not None:
        hook([i.id for i in todo])

    session_updates: list[tuple[int, int, int, str]] = []
    facet_rows: list[tuple[int, str, str, int]] = []
    day_rows: list[tuple[int, int, int]] = []
    cluster_updates: list[tuple[Any, ...]] = []
    frame_rows: list[tuple[int, str]] = []
    touched: dict[int, tuple[str, int, str, int | None]] = {}
    for cid, members in groups.items():
        status, resolved_at = cluster_of[cid]
        per_session: dict[str, list[Item]] = {}
        for m in members:
            per_session.setdefault(m.session_id, []).append(m)
        new_sessions = conn.executemany(
            "INSERT OR IGNORE INTO cluster_sessions "
            "(cluster_id, session_id, failures, first_failure_id, last_seen_at) "
            "VALUES (?, ?, 0, ?, ?)",
            [(cid, sid, ms[0].id, ms[-1].received_at) for sid, ms in per_session.items()],
        ).rowcount
        session_updates.extend(
            (len(ms), max(m.received_at for m in ms), cid, sid) for sid, ms in per_session.items()
        )
        users = sorted({m.user_key for m in members if m.user_key})
        new_users = (
            conn.executemany(
                "INSERT OR IGNORE INTO cluster_users (cluster_id, user_key) VALUES (?, ?)",
                [(cid, u) for u in users],
            ).rowcount
            if users
            else 0
        )
        facet_counts = Counter(pair for m in members for pair in m.facets)
        facet_rows.extend((cid, f, v, n) for (f, v), n in facet_counts.items())
        day_counts = Counter(day_of(m.received_at) for m in members)
        day_rows.extend((cid, d, n) for d, n in day_counts.items())
        # The newest failure with a stack becomes the sample, so the raw stack shown is from
        # the current deploy and outlives payload purges longest.
        with_stack = [m for m in members if m.frames is not None]
        sample = with_stack[-1] if with_stack else None
        cluster_updates.append(
            (len(members), new_sessions, new_users,
             min(m.received_at for m in members), max(m.received_at for m in members),
             sample.culprit if sample else None,
             sample.id if sample else None, members[-1].id, now, cid)
        )  # fmt: skip
        if sample is not None and sample.frames is not None:
            frame_rows.append((cid, sample.frames))
        touched[cid] = (
            members[0].site_id,
            max(m.received_at for m in members),
            status,
            resolved_at,
        )

    conn.executemany(
        "UPDATE cluster_sessions SET failures = failures + ?, last_seen_at = max(last_seen_at, ?) "
        "WHERE cluster_id = ? AND session_id = ?",
        session_updates,
    )
    conn.executemany(
        "INSERT INTO cluster_facets (cluster_id, facet, value, count) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (cluster_id, facet, value) DO UPDATE SET count = count + excluded.count",
        facet_rows,
    )
    conn.executemany(
        "INSERT INTO cluster_days (cluster_id, day, count) VALUES (?, ?, ?) "
        "ON CONFLICT (cluster_id, day) DO UPDATE SET count = count + excluded.count",
        day_rows,
    )
    conn.executemany(
        "UPDATE clusters SET failure_count = failure_count + ?, "
        "session_count = session_count + ?, user_count = user_count + ?, "
        "first_seen_at = min(first_seen_at, ?), last_seen_at = max(last_seen_at, ?), "
        "culprit = coalesce(?, culprit), "
        "sample_failure_id = coalesce(?, sample_failure_id, ?), updated_at = ? WHERE id = ?",
        cluster_updates,
    )
    # Frames live in their own table (migration 3) so clusters rows stay small for list scans.
    conn.executemany(
        "INSERT INTO cluster_frames (cluster_id, frames) VALUES (?, ?) "
        "ON CONFLICT (cluster_id) DO UPDATE SET frames = excluded.frames",
        frame_rows,
    )
    _lifecycle(conn, touched, promote_after, now, stats)
    return stats


def _lifecycle(
    conn: sqlite3.Connection,
    touched: dict[int, tuple[str, int, str, int | None]],
    promote_after: int,
    now: int,
    stats: BatchStats,
) -> None:
    """Promote candidates that reached the threshold; reopen resolved issues as regressions."""
    candidates = [cid for cid, t in touched.items() if t[2] == "candidate"]
    thresholds = _promote_threshold(conn, {touched[c][0] for c in candidates}, promote_after)
    for chunk in _chunks(candidates):
        marks = ",".join("?" * len(chunk))
        for cid, failures, sessions in conn.execute(
            f"SELECT id, failure_count, session_count FROM clusters WHERE id IN ({marks})",
            tuple(chunk),
        ):
            if should_promote(failures, sessions, thresholds[touched[cid][0]]):
                stats.promoted.append(int(cid))
    # A failure received before the resolution is old news the user saw when resolving.
    stats.regressed = [
        cid
        for cid, (_, newest, status, resolved_at) in touched.items()
        if status == "resolved" and (resolved_at is None or newest > resolved_at)
    ]
    if stats.promoted:
        conn.executemany(
            "UPDATE clusters SET status = 'open', promoted_at = ? "
            "WHERE id = ? AND status = 'candidate'",
            [(now, cid) for cid in stats.promoted],
        )
    if stats.regressed:
        conn.executemany(
            "UPDATE clusters SET status = 'open', regression = 1, regressed_at = ? "
            "WHERE id = ? AND status = 'resolved'",
            [(now, cid) for cid in stats.regressed],
        )
    events = [(cid, now, "promoted") for cid in stats.promoted]
    events += [(cid, now, "regressed") for cid in stats.regressed]
    if events:
        conn.executemany(
            "INSERT INTO issue_events (cluster_id, at, action) VALUES (?, ?, ?)", events
        )
        # Alerts are queued in this same transaction: an alert exists exactly when its
        # promotion or regression does (the deliver job sends them; see alerts/outbox.py).
        outbox.enqueue(
            conn,
            [(cid, touched[cid][0], "promoted") for cid in stats.promoted]
            + [(cid, touched[cid][0], "regression") for cid in stats.regressed],
            now,
        )
