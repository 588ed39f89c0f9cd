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
open, regression = 1, regressed_at, an issue_events 'regressed' row). An issue resolved "in the
next release" (resolved_in_release = the site's newest release at that moment) reopens only for
a failure from a release first seen after that one (issues/releases.py), or one without a
release received after the resolution. Ignored issues stay ignored while their counts keep
growing. Promotions and regressions queue their alerts (alert_outbox rows, one per matching
rule) in the same transaction. Cluster `kind` is the failure family: error (error,
unhandledrejection and custom share clusters), network or console.

Source maps: before fingerprinting, each batch looks up the stored maps of its (site, release)
pairs and the debug IDs its failures report (sourcemaps/resolve.py); the compute process
symbolicates the frames (issues/symbolicate.py) so grouping and display use original functions
and files. A failure clustered before its maps arrived keeps its cluster (grouping is never
changed retroactively); refresh_frames re-symbolicates the cluster's displayed frames once the
maps are stored.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgspec

from retrospec.alerts import outbox
from retrospec.clock import day_of, now_ms
from retrospec.ingest.envelope import FailurePayload, decode_payload
from retrospec.issues import grouping_v1, identity, releases
from retrospec.issues.fingerprint import (
    GROUPING_VERSION,
    FailureInput,
    Fingerprint,
    fingerprint,
    path_template,
)
from retrospec.issues.sourcemapping import (
    fetch_enabled,
    fetch_missing,
    map_index,
    refresh_frames,
    stored_frames,
    symbolicate_stack,
    through_maps,
)
from retrospec.issues.stackframes import Frame
from retrospec.jobs.context import JobContext, JobResult
from retrospec.sourcemaps.resolve import (
    MapIndex,
    cache_for,
)
from retrospec.storage.db import connect, insert_rows, is_postgres, update_from_rows, update_ids

log = logging.getLogger(__name__)

FACET_VALUE_CHARS = 300
_CHUNK = 400  # bound on bound parameters per statement (row-value IN lists)
# One write transaction takes at most this many failures or distinct fingerprints, so ingest
# groups get the writer in between (issue 19); what a slice takes is what an ingest arriving
# during it waits. Keeping up, slices are small: 250 failures, 14 ms (median) at half load
# here; that took the ingest p99 from 94-113 ms to 62-83 ms. Behind (the oldest failure
# claimed is over CATCH_UP_MS old, as under a flood), they are big: the writer takes turns
# slice by slice with ingest groups, so a slice's size is the job's share of the writer. Under
# a flood, slices of 200 clustered 4,278 failures/s against 9,366 ingested; of 1,000 (29 ms),
# 8,100 against 8,239, never winning back the first seconds; of 2,000, 9,292 against 9,136.
WRITE_SLICE_FAILURES = 2000
KEEPING_UP_SLICE_FAILURES = 250
CATCH_UP_MS = 2000
# Distinct fingerprints per slice, the same two ways. Every new issue dirties its own pages of
# the clusters indexes (the fingerprint one is random), and a commit writes each dirty page
# once: behind, on a backlog of all-distinct stacks (10,000 from a real ingest, offline, WAL
# autocheckpoint off as in the server), slices of 400 wrote 1.4 WAL frames per failure and
# cost the writer 90 us each, against 2.6 frames and 140 us in slices of 100. A slice of 400
# new issues (~40 ms) holds ingest back about as long as a catch-up slice of 2,000 failures of
# one bug.
WRITE_SLICE_KEYS = 400
KEEPING_UP_SLICE_KEYS = 100

# Test hooks (ctx.options): called with the batch's failure ids.
BEFORE_WRITE = "before_write"  # in the job thread, after fingerprinting, before the write
MIDWAY = "midway"  # inside the write fn, after clusters and failures are written

_SELECT_BATCH = """
SELECT id, site_id, session_id, kind, type, message, url, received_at, method, request_url,
       status, release, browser, os, user_key, payload
FROM failures WHERE cluster_id IS NULL AND id > ? ORDER BY id LIMIT ?
"""

_STILL_UNCLAIMED = "SELECT id FROM failures WHERE cluster_id IS NULL AND id BETWEEN ? AND ?"


class Item(NamedTuple):
    """One fingerprinted failure, ready to be written.

    A named tuple, not a dataclass: batches of thousands come back from the compute process,
    and unpickling is on the server's interpreter, the event loop's. A frozen dataclass
    unpickles field by field (16 ms per 2,700 items measured), a tuple in one call (3.5 ms).
    """

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
    release: str | None = None
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
    shed: int = 0  # failures of hot clusters counted without keeping their payload


def frame_dict(f: Frame) -> dict[str, Any]:
    """One stored frame; symbolicated ones carry `mapped` and their source context."""
    out: dict[str, Any] = {
        "function": f.function,
        "path": f.path,
        "raw_file": f.raw_file,
        "line": f.line,
        "column": f.column,
        "in_app": f.in_app,
    }
    if f.mapped:
        out["mapped"] = True
        out["context_line"] = f.context_line
        out["pre_context"] = list(f.pre_context)
        out["post_context"] = list(f.post_context)
    return out


def frames_json(fp: Fingerprint) -> str | None:
    """The normalised frames of a fingerprint as compact JSON (None without frames)."""
    if not fp.frames:
        return None
    return msgspec.json.encode([frame_dict(f) for f in fp.frames]).decode("utf-8")


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


def _payload(row: Mapping[str, Any]) -> FailurePayload | None:
    if not row["payload"]:
        return None
    try:
        return decode_payload(row["payload"])
    except msgspec.DecodeError:
        return None


def symbolicated_frames(
    row: Mapping[str, Any], stack: str | None, debug_ids: dict[str, str] | None, maps: MapIndex
) -> tuple[Frame, ...] | None:
    """The failure's frames through its source maps, or None when no frame has a map."""
    if not stack:
        return None
    page = _page_origin(row["url"])
    return symbolicate_stack(stack, page, str(row["site_id"]), row["release"], debug_ids, maps)


def failure_input(row: Mapping[str, Any], maps: MapIndex | None = None) -> FailureInput:
    """Build the fingerprinter's input from a failures row (stack and explicit parts in payload);
    with `maps`, frames that have a source map are symbolicated first."""
    stack: str | None = None
    explicit: tuple[str, ...] | None = None
    frames: tuple[Frame, ...] | None = None
    payload = _payload(row)
    if payload is not None:
        stack = payload.stack
        explicit = tuple(payload.fingerprint) if payload.fingerprint else None
        if maps and stack:
            frames = symbolicated_frames(row, stack, payload.debug_ids, maps)
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
        frames=frames,
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
    row: Mapping[str, Any], maps: MapIndex | None = None, legacy_versions: Sequence[int] = ()
) -> tuple[Item, bool]:
    """Fingerprint one failures row (frames through their source maps when `maps` has them;
    in a transition, its older-version hashes too); the flag is False when it needed the
    fallback."""
    ok = True
    legacy: tuple[str, ...] = ()
    try:
        failure = failure_input(row, maps)
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
        facets=_facets(row["browser"], row["os"], row["url"], row["release"]),
        release=row["release"],
        legacy=legacy,
        position=fp.position,
    )
    return item, ok


def input_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What fingerprint_row reads from a row: rows with equal keys fingerprint alike."""
    # The payload carries no timestamp, so a bug repeating in one deploy repeats it byte for byte.
    return (
        row["site_id"], row["release"], row["kind"], row["type"], row["message"],
        _page_origin(row["url"]), row["method"], row["request_url"], row["status"], row["payload"],
    )  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _facets(
    browser: str | None, os: str | None, url: str | None, release: str | None
) -> tuple[tuple[str, str], ...]:
    return facets_of({"browser": browser, "os": os, "url": url, "release": release})


def fingerprint_rows(
    rows: list[dict[str, Any]],
    maps: MapIndex | None = None,
    legacy_versions: Sequence[int] = (),
) -> tuple[list[tuple[Item, bool]], int]:
    """fingerprint_row over a batch (a top-level function, so it can run in a child process);
    also returns how many source maps failed to load or look up meanwhile.

    Each distinct input is fingerprinted once: a repeated bug costs a dict lookup per failure,
    and its items share one set of strings (pickled once on the way back from the child)."""
    cache = cache_for(maps.blob_url, maps.cache_bytes) if maps else None
    before = cache.errors if cache is not None else 0
    seen: dict[tuple[Any, ...], tuple[Item, bool]] = {}
    done: list[tuple[Item, bool]] = []
    for row in rows:
        key = input_key(row)
        first = seen.get(key)
        if first is None:
            first = seen[key] = fingerprint_row(row, maps, legacy_versions)
            done.append(first)
            continue
        f = first[0]
        item = Item(
            int(row["id"]), f.site_id, str(row["session_id"]), row["user_key"],
            int(row["received_at"]), f.fingerprint, f.kind, f.basis, f.title, f.culprit,
            f.frames, _facets(row["browser"], row["os"], row["url"], row["release"]),
            f.release, f.legacy, f.position,
        )  # fmt: skip
        done.append((item, first[1]))
    return done, (cache.errors - before if cache is not None else 0)


@dataclass(frozen=True, slots=True)
class Fingerprinted:
    """One claimed batch, fingerprinted."""

    items: list[Item]
    rows: int  # rows read: a full batch means a backlog
    errors: int = 0  # failures that needed the fallback fingerprint
    map_errors: int = 0  # source maps that failed to load or look up


def read_and_fingerprint(
    database: str,
    after: int,
    limit: int,
    blob_url: str,
    cache_mb: int,
    legacy_versions: Sequence[int] = (),
) -> Fingerprinted:
    """Read the next unclustered failures after id `after` and fingerprint them (a top-level
    function for the compute process: the payloads and the per-row work stay off the server's
    interpreter, which only gets the items back)."""
    conn = connect(database, readonly=True)
    try:
        rows = [dict(r) for r in conn.execute(_SELECT_BATCH, (after, limit))]
        maps = map_index(conn, rows, blob_url, cache_mb) if rows else None
    finally:
        conn.close()
    done, map_errors = fingerprint_rows(rows, maps, legacy_versions)
    return Fingerprinted(
        [item for item, _ok in done], len(rows), sum(1 for _i, ok in done if not ok), map_errors
    )


def _next_batch(
    ctx: JobContext,
    reader: sqlite3.Connection,
    after: int,
    limit: int,
    legacy: Sequence[int],
    fetching: bool,
) -> Fingerprinted:
    cache_mb = ctx.settings.sourcemap_cache_mb
    if not fetching:
        # Fingerprinting is the CPU-heavy part: in the server it runs in the compute process,
        # off the interpreter the event loop uses, and so does reading the batch.
        got: Fingerprinted = ctx.compute(
            read_and_fingerprint, ctx.database, after, limit, ctx.blobs.url, cache_mb, legacy
        )
        return got
    # A site fetches its maps from its origins: that needs the network and the writer, here.
    rows = [dict(r) for r in reader.execute(_SELECT_BATCH, (after, limit))]
    if not rows:
        return Fingerprinted([], 0)
    maps = map_index(reader, rows, ctx.blobs.url, cache_mb)
    if fetch_missing(ctx, reader, rows, maps):
        maps = map_index(reader, rows, ctx.blobs.url, cache_mb)
    done, map_errors = ctx.compute(fingerprint_rows, rows, maps, legacy)
    items = [item for item, _ok in done]
    return Fingerprinted(items, len(rows), sum(1 for _i, ok in done if not ok), map_errors)


def write_slices(
    items: Sequence[Item], failures: int = WRITE_SLICE_FAILURES, keys: int = WRITE_SLICE_KEYS
) -> list[Sequence[Item]]:
    """Cut a claimed batch into write transactions of at most `failures` failures and `keys`
    distinct fingerprints, so ingest groups get the writer in between."""
    out: list[Sequence[Item]] = []
    start = 0
    seen: set[str] = set()
    for n, item in enumerate(items):
        if (item.fingerprint not in seen and len(seen) >= keys) or n - start >= failures:
            out.append(items[start:n])
            start, seen = n, set()
        seen.add(item.fingerprint)
    if start < len(items):
        out.append(items[start:])
    return out


def run(ctx: JobContext) -> JobResult:
    """Cluster every unclustered failure, in claimed batches written as short transactions."""
    batch_size = max(1, int(ctx.options.get("batch_size", ctx.settings.job_batch_size)))
    batch_max = max(batch_size, int(ctx.options.get("batch_max", ctx.settings.cluster_batch_max)))
    max_batches = ctx.options.get("max_batches")
    before_write: Callable[[list[int]], None] | None = ctx.options.get(BEFORE_WRITE)
    sampling = Sampling(ctx.settings.hot_cluster_after, ctx.settings.hot_cluster_keep_every)
    slice_failures = int(ctx.options.get("slice_failures", WRITE_SLICE_FAILURES))
    keeping_up_slice = min(slice_failures, KEEPING_UP_SLICE_FAILURES)
    slice_keys = int(ctx.options.get("slice_keys", WRITE_SLICE_KEYS))
    keeping_up_keys = min(slice_keys, KEEPING_UP_SLICE_KEYS)
    result = JobResult()
    totals = dict.fromkeys(
        ("claimed", "skipped", "new_clusters", "promoted", "regressed", "aliases", "map_errors",
         "shed", "writes"),
        0,
    )  # fmt: skip
    last_id = 0
    batches = 0
    size = batch_size
    reader = ctx.reader()
    try:
        found, cursor = releases.sessions_since(reader)
        if found or cursor is not None:
            ctx.write(lambda c: releases.record_sessions(c, found, cursor))
        if identity.upgraded_version(reader) < GROUPING_VERSION:
            totals.update(upgrade(ctx, reader, batch_size))
        legacy = identity.legacy_versions(reader, ctx.settings.grouping_transition_days, now_ms())
        fetching = fetch_enabled(reader)
        # While one batch is written, the next is read and fingerprinted (in the compute
        # process, in the server): a backlog then costs max(fingerprinting, writing), not
        # their sum. Only without fetching: fetching maps needs this thread's reader.
        ahead = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cluster-ahead")
        upcoming: concurrent.futures.Future[Fingerprinted] | None = None
        try:
            while max_batches is None or batches < int(max_batches):
                ctx.check_stop()
                if upcoming is not None:
                    got = upcoming.result()
                    upcoming = None
                else:
                    got = _next_batch(ctx, reader, last_id, size, legacy, fetching)
                if not got.items:
                    break
                items = got.items
                result.errors += got.errors
                # A broken map leaves frames minified and is logged; counted, never fatal.
                totals["map_errors"] += got.map_errors
                last_id = items[-1].id
                backlog = got.rows >= size
                if backlog:
                    # A full batch means a backlog: claim more at once, so the per-batch costs
                    # (the read, the trip to the compute process, the map lookups) amortise.
                    size = min(size * 4, batch_max)
                    more = max_batches is None or batches + 1 < int(max_batches)
                    if more and not fetching:
                        upcoming = ahead.submit(
                            _next_batch, ctx, reader, last_id, size, legacy, fetching
                        )
                if before_write is not None:
                    before_write([i.id for i in items])
                # Each slice is a whole transaction of its own (claims and counts together), so
                # a crash between slices leaves the earlier ones complete and the rest unclaimed.
                # They go to the writer together: it commits them in order, an ingest group in
                # between each, so a slice's length is what ingest may wait for.
                behind = now_ms() - items[0].received_at > CATCH_UP_MS
                slice_size = slice_failures if behind else keeping_up_slice
                keys = slice_keys if behind else keeping_up_keys
                writes = [
                    functools.partial(
                        apply_batch,
                        items=part,
                        promote_after=ctx.settings.promote_after,
                        options=ctx.options,
                        sampling=sampling,
                    )
                    for part in write_slices(items, slice_size, keys)
                ]
                for stats in ctx.write_all(writes):
                    totals["writes"] += 1
                    totals["claimed"] += stats.claimed
                    totals["skipped"] += stats.skipped
                    totals["new_clusters"] += stats.new_clusters
                    totals["promoted"] += len(stats.promoted)
                    totals["regressed"] += len(stats.regressed)
                    totals["aliases"] += stats.aliases
                    totals["shed"] += stats.shed
                batches += 1
                if not backlog:
                    break
        finally:
            # A batch read ahead and never written stays unclaimed: the next run takes it.
            ahead.shutdown(wait=True, cancel_futures=True)
        totals["frames_refreshed"] = refresh_frames(ctx, reader, refreshed_frames)
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
        maps = map_index(reader, rows, ctx.blobs.url, ctx.settings.sourcemap_cache_mb)
        done, _map_errors = ctx.compute(fingerprint_rows, rows, maps, ())
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


@dataclass(frozen=True, slots=True)
class Sampling:
    """Backpressure for hot clusters: past `after` failures, keep every `every`th payload."""

    after: int = 0  # 0: never sample
    every: int = 1

    def keeps(self, ordinal: int) -> bool:
        """Whether the cluster's `ordinal`th failure (1-based) keeps its payload."""
        return self.after <= 0 or ordinal <= self.after or ordinal % max(1, self.every) == 0


def _existing_pairs(
    conn: sqlite3.Connection, sql: str, pairs: Iterable[tuple[int, str]]
) -> set[tuple[int, str]]:
    """Which (cluster id, text) pairs a lookup finds; `sql` has `cluster_id = ?` and an
    `IN ({marks})` list, answered from the table's primary key one cluster at a time."""
    by_cluster: dict[int, list[str]] = {}
    for cid, text in pairs:
        by_cluster.setdefault(cid, []).append(text)
    out: set[tuple[int, str]] = set()
    for cid, texts in by_cluster.items():
        for chunk in _chunks(texts):
            marks = ",".join("?" * len(chunk))
            out.update(
                (cid, str(r[0])) for r in conn.execute(sql.format(marks=marks), (cid, *chunk))
            )
    return out


def _unclaimed(conn: sqlite3.Connection, ids: Sequence[int]) -> set[int]:
    """Which of these distinct failure ids are unclaimed. Counted first: usually all are, and
    a count is one row back where the ids are a step (a GIL hand-over) each, see insert_rows."""
    count = sum(
        conn.execute(
            "SELECT count(*) FROM failures WHERE cluster_id IS NULL "
            f"AND id IN ({','.join('?' * len(chunk))})",
            tuple(chunk),
        ).fetchone()[0]
        for chunk in _chunks(ids)
    )
    if count == len(ids):
        return set(ids)
    return {row[0] for row in conn.execute(_STILL_UNCLAIMED, (min(ids), max(ids)))}


# One statement claims a whole slice on SQLite: with every failure a new bug there are as many
# (fingerprint, cluster) groups as failures, and a statement per group cost a GIL hand-over each.
_CLAIM_ROWS = (
    "WITH v(id, fingerprint, cluster_id, keep) AS (VALUES (?, ?, ?, ?)) "
    "UPDATE failures SET fingerprint = v.fingerprint, cluster_id = v.cluster_id, "
    "payload = CASE WHEN v.keep THEN failures.payload END "
    "FROM v WHERE failures.id = v.id AND failures.cluster_id IS NULL"
)


def _claim(conn: sqlite3.Connection, claims: Mapping[tuple[str, int, bool], list[int]]) -> int:
    """Set fingerprint and cluster on unclaimed failures ((fingerprint, cluster, payload kept)
    -> ids), dropping the payloads sampling does not keep; returns how many were claimed."""
    if not is_postgres(conn):
        rows = [(fid, key, cid, keeps) for (key, cid, keeps), ids in claims.items() for fid in ids]
        return update_from_rows(conn, _CLAIM_ROWS, rows)
    claimed = 0
    for (key, cid, keeps), claim_ids in claims.items():
        claimed += update_ids(
            conn,
            "UPDATE failures SET fingerprint = ?, cluster_id = ?"
            + ("" if keeps else ", payload = NULL")
            + " WHERE",
            (key, cid),
            claim_ids,
            "AND cluster_id IS NULL",
        )
    return claimed


def apply_batch(
    conn: sqlite3.Connection,
    items: Sequence[Item],
    promote_after: int,
    options: dict[str, Any] | None = None,
    sampling: Sampling | None = None,
) -> BatchStats:
    """Write one fingerprinted batch (runs on the writer, inside its transaction).

    Work is per distinct key, cluster and (cluster, session) pair, in a few statements each;
    claiming the failures themselves is one statement per slice on SQLite (_claim).
    """
    stats = BatchStats()
    if not items:
        return stats
    now = now_ms()
    ids = [i.id for i in items]
    # Inside the write lock: which of these are still unclaimed? (Another run may have won.)
    still = _unclaimed(conn, ids)
    todo = [i for i in items if i.id in still]
    stats.skipped = len(items) - len(todo)
    if not todo:
        return stats

    # Distinct keys in first-seen order: resolving them is what resolving every failure in
    # order would do (equal keys always land together), at the cost of one per key.
    key_no: dict[identity.Key, int] = {}
    keys: list[identity.Key] = []
    firsts: list[list[Item]] = []  # per key: its failures, oldest first
    for item in todo:
        k = identity.Key(item.site_id, item.fingerprint, item.legacy, item.position)
        n = key_no.get(k)
        if n is None:
            n = key_no[k] = len(keys)
            keys.append(k)
            firsts.append([])
        firsts[n].append(item)
    # Which cluster each key joins (old issues by their old key, then current key or alias).
    res = identity.resolve(conn, keys)
    # Clusters: create the missing ones. New failures at one exact position share the cluster
    # of the first (identity.py, rule 3).
    fresh: dict[tuple[str, str], list[Item]] = {}
    leader: dict[tuple[str, str], str] = {}
    creation: dict[int, tuple[str, str]] = {}
    for n, k in enumerate(keys):
        if n not in res.clusters:
            fp = k.fingerprint
            if k.position:
                fp = leader.setdefault((k.site_id, k.position), fp)
            creation[n] = (k.site_id, fp)
            fresh.setdefault((k.site_id, fp), []).extend(firsts[n])
    # A new cluster is inserted whole (its counts, sample and status from this batch): each of
    # its index entries is written once. Inserting zeros, then updating the counters, then the
    # status when it promoted at once, rewrote the counter and status indexes three times
    # (issue 19: most of the cost of a new bug).
    sampling = sampling or Sampling()
    # Promotion thresholds of every site in the batch, read once: new clusters need them here,
    # existing candidates in _lifecycle.
    thresholds = _promote_threshold(conn, {i.site_id for i in todo}, promote_after)
    new_rows = []
    opened: set[tuple[str, str]] = set()
    for (site_id, fp), members in fresh.items():
        members.sort(key=lambda m: m.id)
        first = members[0]
        sample = _sample(members, _kept(members, 0, sampling))
        sessions = len({m.session_id for m in members})
        users = len({m.user_key for m in members if m.user_key})
        if should_promote(len(members), sessions, thresholds[site_id]):
            opened.add((site_id, fp))
        new_rows.append(
            (site_id, fp, first.kind, first.basis, first.title,
             first.culprit if sample is None or sample.culprit is None else sample.culprit,
             min(m.received_at for m in members), max(m.received_at for m in members),
             sample.id if sample else first.id, now, GROUPING_VERSION,
             _oldest_release(members), _newest_release(members), len(members), sessions, users,
             "open" if (site_id, fp) in opened else "candidate",
             now if (site_id, fp) in opened else None)
        )  # fmt: skip
    # Ids above this one are the clusters this transaction creates (ids only grow).
    top_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM clusters").fetchone()[0])
    stats.new_clusters = insert_rows(
        conn,
        "INSERT INTO clusters (site_id, fingerprint, kind, basis, title, culprit, "
        "first_seen_at, last_seen_at, sample_failure_id, updated_at, grouping_version, "
        "first_release, last_release, failure_count, session_count, user_count, status, "
        "promoted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (site_id, fingerprint) DO NOTHING",
        new_rows,
    )
    # Releases first: "newer release" below compares against what this batch saw too.
    releases.record_failures(
        conn, [(i.site_id, i.release, i.received_at) for i in todo if i.release]
    )
    created: dict[tuple[str, str], int] = {}
    for chunk in _chunks(list(fresh)):
        values = ",".join("(?, ?)" for _ in chunk)
        params = tuple(x for key in chunk for x in key)
        for cid, site_id, fp in conn.execute(
            f"WITH k(a, b) AS (VALUES {values}) SELECT c.id, c.site_id, c.fingerprint "
            "FROM k JOIN clusters c ON c.site_id = k.a AND c.fingerprint = k.b",
            params,
        ):
            created[(site_id, fp)] = int(cid)
    # Clusters this transaction inserted whole; a key that found its row already there (never
    # under the write lock, but cheap to honour) is counted like any existing cluster below.
    whole = {cid for cid in created.values() if cid > top_id}
    born_open = [(cid, key[0]) for key, cid in created.items() if cid in whole and key in opened]
    target_of = [
        res.clusters[n] if n in res.clusters else created[creation[n]] for n in range(len(keys))
    ]
    # Keys that joined another key's cluster through their position lead there from now on.
    aliases = list(res.aliases)
    aliases += [
        (k.site_id, k.fingerprint, target_of[n])
        for n, k in enumerate(keys)
        if n in creation and creation[n][1] != k.fingerprint
    ]
    stats.aliases = identity.add_aliases(conn, aliases, now)
    identity.add_positions(
        conn, [(k.site_id, k.position, target_of[n]) for n, k in enumerate(keys) if k.position], now
    )
    groups: dict[int, list[Item]] = {}
    for n, members in enumerate(firsts):
        groups.setdefault(target_of[n], []).extend(members)
    cluster_of: dict[int, tuple[str, int | None, str | None, int]] = {}
    for chunk in _chunks([cid for cid in groups if cid not in whole]):
        marks = ",".join("?" * len(chunk))
        for cid, status, resolved_at, in_release, count in conn.execute(
            "SELECT id, status, resolved_at, resolved_in_release, failure_count FROM clusters "
            f"WHERE id IN ({marks})",
            tuple(chunk),
        ):
            cluster_of[int(cid)] = (str(status), resolved_at, in_release, int(count))

    # Claim the failures; the extra `cluster_id IS NULL` makes a double claim impossible. In a
    # hot cluster most failures give up their payload (sampling); every one is still counted.
    # (fingerprint, cluster, payload kept) -> failure ids, claimed together (_claim).
    claims: dict[tuple[str, int, bool], list[int]] = {}
    kept_ids: set[int] = set()
    for cid, members in groups.items():
        members.sort(key=lambda m: m.id)
        kept = _kept(members, 0 if cid in whole else cluster_of[cid][3], sampling)
        kept_ids |= kept
        for m in members:
            claims.setdefault((m.fingerprint, cid, m.id in kept), []).append(m.id)
    shed = sum(len(claim_ids) for (_k, _c, keeps), claim_ids in claims.items() if not keeps)
    claimed = _claim(conn, claims)
    if claimed != len(todo):  # impossible under the write lock; roll back rather than miscount
        raise RuntimeError(f"claimed {claimed} of {len(todo)} failures; batch rolled back")
    stats.claimed = claimed
    stats.shed = shed
    hook = (options or {}).get(MIDWAY)
    if hook is not None:
        hook([i.id for i in todo])

    # Distinct sessions and users: one lookup per batch says which pairs are new.
    session_rows: dict[tuple[int, str], list[Any]] = {}
    user_pairs: set[tuple[int, str]] = set()
    for cid, members in groups.items():
        for m in members:
            entry = session_rows.get((cid, m.session_id))
            if entry is None:
                session_rows[(cid, m.session_id)] = [cid, m.session_id, 1, m.id, m.received_at]
            else:
                entry[2] += 1
                entry[4] = max(entry[4], m.received_at)
            if m.user_key:
                user_pairs.add((cid, m.user_key))
    # A cluster this transaction created has no sessions or users yet: nothing to look up.
    known_sessions = _existing_pairs(
        conn,
        "SELECT session_id FROM cluster_sessions WHERE cluster_id = ? AND session_id IN ({marks})",
        (pair for pair in session_rows if pair[0] not in whole),
    )
    known_users = _existing_pairs(
        conn,
        "SELECT user_key FROM cluster_users WHERE cluster_id = ? AND user_key IN ({marks})",
        (pair for pair in sorted(user_pairs) if pair[0] not in whole),
    )
    new_sessions = Counter(cid for cid, sid in session_rows if (cid, sid) not in known_sessions)
    new_users = sorted(pair for pair in user_pairs if pair not in known_users)
    users_per_cluster = Counter(cid for cid, _ in new_users)

    facet_rows: list[tuple[int, str, str, int]] = []
    day_rows: list[tuple[int, int, int]] = []
    cluster_updates: list[tuple[Any, ...]] = []
    frame_rows: list[tuple[int, str]] = []
    touched: dict[int, Touched] = {}
    for cid, members in groups.items():
        facet_counts = Counter(pair for m in members for pair in m.facets)
        facet_rows.extend((cid, f, v, n) for (f, v), n in facet_counts.items())
        day_counts = Counter(day_of(m.received_at) for m in members)
        day_rows.extend((cid, d, n) for d, n in day_counts.items())
        sample = _sample(members, kept_ids)
        if sample is not None and sample.frames is not None:
            frame_rows.append((cid, sample.frames))
        if cid in whole:
            continue  # inserted with all of this above
        status, resolved_at, in_release, _count = cluster_of[cid]
        last_at = max(m.received_at for m in members)
        cluster_updates.append(
            (len(members), new_sessions[cid], users_per_cluster[cid],
             min(m.received_at for m in members), last_at,
             sample.culprit if sample else None,
             sample.id if sample else None, members[-1].id, now, _newest_release(members),
             _oldest_release(members), cid)
        )  # fmt: skip
        touched[cid] = Touched(
            members[0].site_id, last_at, status, resolved_at, in_release,
            _release_points(members),
        )  # fmt: skip

    insert_rows(
        conn,
        "INSERT INTO cluster_sessions (cluster_id, session_id, failures, first_failure_id, "
        "last_seen_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (cluster_id, session_id) DO UPDATE "
        "SET failures = cluster_sessions.failures + excluded.failures, "
        "last_seen_at = max(cluster_sessions.last_seen_at, excluded.last_seen_at)",
        list(session_rows.values()),
    )
    insert_rows(
        conn,
        "INSERT INTO cluster_users (cluster_id, user_key) VALUES (?, ?) "
        "ON CONFLICT (cluster_id, user_key) DO NOTHING",
        new_users,
    )
    insert_rows(
        conn,
        "INSERT INTO cluster_facets (cluster_id, facet, value, count) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (cluster_id, facet, value) DO UPDATE SET "
        "count = cluster_facets.count + excluded.count",
        facet_rows,
    )
    insert_rows(
        conn,
        "INSERT INTO cluster_days (cluster_id, day, count) VALUES (?, ?, ?) "
        "ON CONFLICT (cluster_id, day) DO UPDATE SET count = cluster_days.count + excluded.count",
        day_rows,
    )
    if cluster_updates:
        conn.executemany(
            "UPDATE clusters SET failure_count = failure_count + ?, "
            "session_count = session_count + ?, user_count = user_count + ?, "
            "first_seen_at = min(first_seen_at, ?), last_seen_at = max(last_seen_at, ?), "
            "culprit = coalesce(?, culprit), "
            "sample_failure_id = coalesce(?, sample_failure_id, ?), updated_at = ?, "
            "last_release = coalesce(?, last_release), first_release = coalesce(first_release, ?) "
            "WHERE id = ?",
            cluster_updates,
        )
    # Frames live in their own table (migration 3) so clusters rows stay small for list scans.
    insert_rows(
        conn,
        "INSERT INTO cluster_frames (cluster_id, frames) VALUES (?, ?) "
        "ON CONFLICT (cluster_id) DO UPDATE SET frames = excluded.frames",
        frame_rows,
    )
    _lifecycle(conn, touched, thresholds, now, stats, born_open)
    return stats


def _kept(members: Sequence[Item], before: int, sampling: Sampling) -> set[int]:
    """Ids of the members (oldest first) that keep their payload, `before` failures already in
    their cluster."""
    return {m.id for n, m in enumerate(members, start=1) if sampling.keeps(before + n)}


def _sample(members: Sequence[Item], kept: set[int]) -> Item | None:
    """The newest failure with a stack whose payload is kept: the cluster's sample, so the raw
    stack shown is from the current deploy and outlives payload purges longest."""
    return next((m for m in reversed(members) if m.frames is not None and m.id in kept), None)


def _newest_release(members: Sequence[Item]) -> str | None:
    return next((m.release for m in reversed(members) if m.release), None)


def _oldest_release(members: Sequence[Item]) -> str | None:
    return next((m.release for m in members if m.release), None)


def _release_points(members: Sequence[Item]) -> tuple[tuple[str | None, int], ...]:
    """(release, newest received_at) per release, oldest first: what the regression rules read."""
    # One point per release (its newest failure) decides exactly what every failure would.
    newest: dict[str | None, int] = {}
    for m in members:
        newest[m.release] = max(newest.get(m.release, m.received_at), m.received_at)
    return tuple(sorted(newest.items(), key=lambda p: p[1]))


@dataclass(frozen=True, slots=True)
class Touched:
    """A cluster one batch added failures to, as the lifecycle rules need it."""

    site_id: str
    newest: int  # received_at of its newest failure in the batch
    status: str
    resolved_at: int | None
    resolved_in_release: str | None
    failures: tuple[tuple[str | None, int], ...]  # (release, received_at) of the batch's


def _regression(conn: sqlite3.Connection, t: Touched) -> tuple[bool, str | None]:
    """Whether the batch reopens a resolved issue, and the release that did it."""
    if t.status != "resolved":
        return False, None
    after = [(rel, at) for rel, at in t.failures if t.resolved_at is None or at > t.resolved_at]
    if t.resolved_in_release is None:
        # A failure received before the resolution is old news the user saw when resolving.
        return bool(after), next((rel for rel, _ in reversed(after) if rel), None)
    for rel, _at in reversed(t.failures):
        if rel and releases.is_newer(conn, t.site_id, rel, t.resolved_in_release):
            return True, rel
    # Without a release nothing says which build it came from: treat it as after the fix.
    return any(rel is None for rel, _ in after), None


def _lifecycle(
    conn: sqlite3.Connection,
    touched: dict[int, Touched],
    thresholds: Mapping[str, int],
    now: int,
    stats: BatchStats,
    born_open: Sequence[tuple[int, str]] = (),
) -> None:
    """Promote candidates that reached the threshold; reopen resolved issues as regressions.
    `born_open`: (id, site) of clusters this batch created already promoted (they need their
    events and alerts only)."""
    candidates = [cid for cid, t in touched.items() if t.status == "candidate"]
    promoted_now: list[int] = []  # existing candidates that reach the threshold with this batch
    for chunk in _chunks(candidates):
        marks = ",".join("?" * len(chunk))
        for cid, failures, sessions in conn.execute(
            f"SELECT id, failure_count, session_count FROM clusters WHERE id IN ({marks})",
            tuple(chunk),
        ):
            if should_promote(failures, sessions, thresholds[touched[cid].site_id]):
                promoted_now.append(int(cid))
    stats.promoted = [cid for cid, _site in born_open] + promoted_now
    site_of = {cid: t.site_id for cid, t in touched.items()} | dict(born_open)
    regressed_in: dict[int, str | None] = {}
    for cid, t in touched.items():
        reopens, release = _regression(conn, t)
        if reopens:
            regressed_in[cid] = release
    stats.regressed = list(regressed_in)
    if promoted_now:
        conn.executemany(
            "UPDATE clusters SET status = 'open', promoted_at = ? "
            "WHERE id = ? AND status = 'candidate'",
            [(now, cid) for cid in promoted_now],
        )
    if stats.regressed:
        conn.executemany(
            "UPDATE clusters SET status = 'open', regression = 1, regressed_at = ?, "
            "resolved_in_release = NULL WHERE id = ? AND status = 'resolved'",
            [(now, cid) for cid in stats.regressed],
        )
    events: list[tuple[int, int, str, str | None]] = [
        (cid, now, "promoted", None) for cid in stats.promoted
    ]
    events += [(cid, now, "regressed", regressed_in[cid]) for cid in stats.regressed]
    if events:
        conn.executemany(
            "INSERT INTO issue_events (cluster_id, at, action, release) VALUES (?, ?, ?, ?)",
            events,
        )
        # Alerts are queued in this same transaction: an alert exists exactly when its
        # promotion or regression does (the deliver job sends them; see alerts/outbox.py).
        outbox.enqueue(
            conn,
            [(cid, site_of[cid], "promoted") for cid in stats.promoted]
            + [(cid, site_of[cid], "regression") for cid in stats.regressed],
            now,
        )


def refreshed_frames(
    rows: list[dict[str, Any]], maps: MapIndex
) -> list[tuple[int, str, str | None]]:
    """(cluster id, frames JSON, culprit) for clusters whose sample now symbolicates (compute)."""
    out: list[tuple[int, str, str | None]] = []
    for row in rows:
        try:
            failure = failure_input(row, maps)
            if failure.frames is None and _payload(row) is None:
                stored = stored_frames(row["frames"])
                if stored and not any(f.mapped for f in stored):
                    mapped = through_maps(stored, str(row["site_id"]), row["release"], None, maps)
                    if mapped is not None:
                        failure = dataclasses.replace(failure, frames=mapped)
            if failure.frames is None:
                continue
            fp = fingerprint(failure)
            text = frames_json(fp)
            if text is not None:
                out.append((int(row["cluster_id"]), text, fp.culprit))
        except Exception:  # display only: one odd sample must not stop the others
            log.exception("re-symbolicating cluster %s failed", row["cluster_id"])
    return out
