"""Source maps in the cluster job: which stored maps serve a batch, fetch mode, display refresh.

The job thread builds a MapIndex per batch (map_index) and, for sites with fetch mode on,
fetches what no stored map covers (fetch_missing); the compute process symbolicates through
through_maps. refresh_frames re-symbolicates the displayed frames of clusters sampled before
their maps arrived (grouping is not changed retroactively: those failures keep their cluster).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from retrospec.clock import now_ms
from retrospec.errors import RetrospecError
from retrospec.ingest.envelope import decode_payload
from retrospec.issues.stackframes import Frame, parse_stack
from retrospec.issues.symbolicate import symbolicate
from retrospec.jobs.context import JobContext
from retrospec.sites import get_site
from retrospec.sourcemaps.fetch import Limits, fetch_artifact
from retrospec.sourcemaps.maps import normalize_debug_id
from retrospec.sourcemaps.resolve import (
    MapIndex,
    Resolved,
    build_index,
    cache_for,
    debug_id_for,
)
from retrospec.sourcemaps.store import done_refresh, store_artifacts, take_refresh

log = logging.getLogger(__name__)

RefreshFn = Callable[[list[dict[str, Any]], MapIndex], list[tuple[int, str, str | None]]]


class _DebugIds(msgspec.Struct):
    debug_ids: dict[str, str] | None = None


_DEBUG_IDS = msgspec.json.Decoder(_DebugIds)


# One bug repeats the same stack thousands of times: symbolicate it once per set of maps.
_RESULTS: OrderedDict[tuple[Any, ...], tuple[Frame, ...] | None] = OrderedDict()
_RESULTS_MAX = 4096
_RESULTS_MAX_STACK = 8192  # longer stacks are not kept (bounded memory)


def symbolicate_stack(
    stack: str,
    page_url: str | None,
    site_id: str,
    release: str | None,
    debug_ids: dict[str, str] | None,
    maps: MapIndex,
) -> tuple[Frame, ...] | None:
    """A failure's stack through its maps (compute); results reused for repeated stacks."""
    key = (maps.token, site_id, release, stack, page_url, tuple(sorted((debug_ids or {}).items())))
    if key in _RESULTS:
        _RESULTS.move_to_end(key)
        return _RESULTS[key]
    frames = parse_stack(stack, page_url=page_url, collapse=False)
    out = through_maps(frames, site_id, release, debug_ids, maps) if frames else None
    cache = cache_for(maps.blob_url, maps.cache_bytes)
    if len(stack) <= _RESULTS_MAX_STACK and not cache.errors_since_reset:
        _RESULTS[key] = out
        while len(_RESULTS) > _RESULTS_MAX:
            _RESULTS.popitem(last=False)
    cache.errors_since_reset = 0
    return out


def through_maps(
    frames: list[Frame],
    site_id: str,
    release: str | None,
    debug_ids: dict[str, str] | None,
    maps: MapIndex,
) -> tuple[Frame, ...] | None:
    """Frames (top first) through their stored maps; None when no frame has one (compute)."""
    cache = cache_for(maps.blob_url, maps.cache_bytes)
    now = time.monotonic()

    def resolve(frame: Frame) -> Resolved | None:
        if not frame.raw_file:
            return None
        debug_id = debug_id_for(debug_ids, frame.raw_file)
        ref = maps.find(site_id, release, frame.raw_file, debug_id)
        return None if ref is None else cache.get(ref, now)

    before = cache.errors
    out, errors = symbolicate(frames, resolve)
    cache.errors += errors
    cache.errors_since_reset += cache.errors - before
    return tuple(out) if any(f.mapped for f in out) else None


def map_index(
    conn: sqlite3.Connection, rows: Sequence[Mapping[str, Any]], blob_url: str, cache_mb: int
) -> MapIndex | None:
    """The stored maps that may serve a batch (None when there are none: the plain path)."""
    wanted = {(str(r["site_id"]), str(r["release"])) for r in rows if r["release"] is not None}
    debug_ids: set[tuple[str, str]] = set()
    for r in rows:
        payload = r["payload"]
        if payload and "debug_ids" in payload:
            try:
                ids = _DEBUG_IDS.decode(payload).debug_ids
            except msgspec.DecodeError:
                continue
            for value in (ids or {}).values():
                found = normalize_debug_id(value)
                if found:
                    debug_ids.add((str(r["site_id"]), found))
    index = build_index(conn, wanted, debug_ids, blob_url=blob_url, cache_bytes=cache_mb << 20)
    return index if index else None


_REFRESH_SELECT = """
SELECT c.id AS cluster_id, c.site_id, f.release, f.url, f.kind, f.type, f.message, f.method,
       f.request_url, f.status, f.payload, cf.frames
FROM clusters c JOIN failures f ON f.id = c.sample_failure_id
JOIN cluster_frames cf ON cf.cluster_id = c.id
WHERE c.site_id = ? AND c.last_seen_at >= ? AND (? = '' OR f.release = ?)
ORDER BY c.last_seen_at DESC LIMIT ?
"""
REFRESH_LIMIT = 2000  # clusters per queued (site, release): the most recently seen ones


def stored_frames(text: str | None) -> list[Frame]:
    """Frames as cluster_frames keeps them (the fallback once the raw stack is purged)."""
    if not text:
        return []
    out = []
    for d in msgspec.json.decode(text):
        out.append(
            Frame(
                function=d.get("function"),
                path=d.get("path"),
                raw_file=d.get("raw_file"),
                line=d.get("line"),
                column=d.get("column"),
                in_app=bool(d.get("in_app")),
                mapped=bool(d.get("mapped")),
            )
        )
    return out


def refresh_frames(ctx: JobContext, reader: sqlite3.Connection, compute_fn: RefreshFn) -> int:
    """Re-symbolicate the displayed frames of clusters whose maps were stored after them."""
    entries = take_refresh(reader)
    if not entries:
        return 0
    cutoff = now_ms() - int(ctx.settings.retention_days * 86_400_000)
    refreshed = 0
    for site_id, release, queued_at in entries:
        ctx.check_stop()
        rows = [
            dict(r)
            for r in reader.execute(
                _REFRESH_SELECT, (site_id, cutoff, release, release, REFRESH_LIMIT)
            )
            if not all(f.mapped for f in stored_frames(r["frames"]))
        ]
        maps = (
            map_index(reader, rows, ctx.blobs.url, ctx.settings.sourcemap_cache_mb)
            if rows
            else None
        )
        updates: list[tuple[int, str, str | None]] = (
            ctx.compute(compute_fn, rows, maps) if maps else []
        )

        def write(
            conn: sqlite3.Connection,
            updates: list[tuple[int, str, str | None]] = updates,
            entry: tuple[str, str, int] = (site_id, release, queued_at),
        ) -> None:
            conn.executemany(
                "UPDATE cluster_frames SET frames = ? WHERE cluster_id = ?",
                [(text, cid) for cid, text, _ in updates],
            )
            conn.executemany(
                "UPDATE clusters SET culprit = coalesce(?, culprit) WHERE id = ?",
                [(culprit, cid) for cid, _, culprit in updates],
            )
            done_refresh(conn, [entry])

        ctx.write(write)
        refreshed += len(updates)
    return refreshed


def _decode(text: str | None) -> Any:
    if not text:
        return None
    try:
        return decode_payload(text)
    except msgspec.DecodeError:
        return None


FETCHES_PER_RUN = 10
_FETCH_RETRY_S = 600.0
_fetch_failed: dict[tuple[str, str, str], float] = {}  # (site, release, url) -> retry after


def fetch_enabled(conn: sqlite3.Connection) -> bool:
    """Whether any site fetches its source maps from its origins (fetch mode)."""
    return (
        conn.execute("SELECT 1 FROM sites WHERE fetch_sourcemaps = 1 LIMIT 1").fetchone()
        is not None
    )


def fetch_missing(
    ctx: JobContext, reader: sqlite3.Connection, rows: list[dict[str, Any]], maps: MapIndex | None
) -> int:
    """For sites with fetch mode on: fetch bundles and maps of script URLs no stored map covers,
    from the site's allowed origins (sourcemaps/fetch.py); returns how many were stored."""
    site_ids = {str(r["site_id"]) for r in rows if r["release"]}
    if not site_ids:
        return 0
    marks = ",".join("?" * len(site_ids))
    fetching = {
        str(r[0])
        for r in reader.execute(
            f"SELECT id FROM sites WHERE fetch_sourcemaps = 1 AND id IN ({marks})",
            tuple(sorted(site_ids)),
        )
    }
    if not fetching:
        return 0
    wanted: dict[tuple[str, str, str], None] = {}
    for row in rows:
        site_id, release = str(row["site_id"]), row["release"]
        payload = _decode(row["payload"]) if site_id in fetching and release else None
        if payload is None or not payload.stack:
            continue
        for frame in parse_stack(payload.stack, collapse=False):
            url = frame.raw_file or ""
            if not url.startswith(("http://", "https://")):
                continue
            debug_id = debug_id_for(payload.debug_ids, url)
            if maps is not None and maps.find(site_id, release, url, debug_id) is not None:
                continue
            wanted[(site_id, str(release), url.split("#", 1)[0].split("?", 1)[0])] = None
    now = time.monotonic()
    limits = Limits(
        timeout_s=ctx.settings.sourcemap_fetch_timeout_seconds,
        max_bytes=ctx.settings.sourcemap_fetch_max_mb << 20,
    )
    stored = 0
    for key in list(wanted)[:FETCHES_PER_RUN]:
        if _fetch_failed.get(key, 0.0) > now:
            continue
        site_id, release, url = key
        try:
            site = get_site(reader, site_id)
            artifact = fetch_artifact(site, url, limits)
            store_artifacts(ctx.write, ctx.blobs, site_id, release, "", [artifact], origin="fetch")
            stored += 1
        except RetrospecError as exc:
            log.warning("fetch mode: %s", exc.message)
            _fetch_failed[key] = now + _FETCH_RETRY_S
    return stored
