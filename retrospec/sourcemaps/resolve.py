"""Which stored map serves a frame, and the parsed maps kept in memory (bounded in bytes).

The cluster job builds a MapIndex per batch from the store's rows (one indexed query per site and
release in the batch, plus the batch's debug IDs); the index is plain data, so it crosses into
the compute process, where MapCache reads blobs by digest and keeps parsed maps. Keys are
content digests: a map never changes under its key, so nothing needs invalidation.

Matching order for a frame (as Sentry does): the page's debug ID for the script (any release),
then the script URL without query within the failure's release: first the full URL, then
`~/path` (any origin). Several dists of one release: the newest upload wins.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from retrospec.sourcemaps.maps import LoadedMap, SourceMapError, load_map, normalize_debug_id
from retrospec.sourcemaps.scopes import ScopeIndex
from retrospec.storage.blobs import BlobStore, sourcemap_key

log = logging.getLogger(__name__)

_CHUNK = 400
# Measured: a parsed map holds ~4x its JSON size resident (the view plus the kept bytes).
_COST_FACTOR = 4
_FAILED_RETRY_S = 600.0


@dataclass(frozen=True, slots=True)
class MapRef:
    """Where one stored map and its companions live (digests; keys are derived)."""

    site_id: str
    name: str
    map_digest: str
    js_digest: str | None
    scopes_digest: str | None


@dataclass(slots=True)
class MapIndex:
    """The maps that may serve one batch of failures (picklable)."""

    blob_url: str
    cache_bytes: int
    by_name: dict[tuple[str, str], dict[str, MapRef]] = field(default_factory=dict)
    by_debug_id: dict[tuple[str, str], MapRef] = field(default_factory=dict)
    # Digest of everything above: two batches with the same maps get the same token, so
    # symbolication results can be reused across batches (the key changes with any upload).
    token: str = ""

    def __bool__(self) -> bool:
        return bool(self.by_name or self.by_debug_id)

    def find(
        self, site_id: str, release: str | None, url: str | None, debug_id: str | None
    ) -> MapRef | None:
        """The map for one script URL of a failure, or None."""
        if debug_id:
            ref = self.by_debug_id.get((site_id, debug_id))
            if ref is not None:
                return ref
        if not url or release is None:
            return None
        names = self.by_name.get((site_id, release))
        if not names:
            return None
        for key in match_keys(url):
            ref = names.get(key)
            if ref is not None:
                return ref
        return None


def strip_query(url: str) -> str:
    """A URL without its query and fragment."""
    cut = len(url)
    for ch in "?#":
        at = url.find(ch)
        if 0 <= at < cut:
            cut = at
    return url[:cut]


def match_keys(url: str) -> list[str]:
    """Artifact names a script URL can match: the URL itself, then `~/path` (any origin)."""
    bare = strip_query(url.strip())
    scheme, sep, rest = bare.partition("://")
    if not sep:
        return [bare, "~" + bare] if bare.startswith("/") else [bare]
    host, slash, path = rest.partition("/")
    full = f"{scheme.lower()}://{host.lower()}/{path}"
    return [full, f"~/{path}"] if slash else [full]


def debug_id_for(debug_ids: dict[str, str] | None, url: str | None) -> str | None:
    """The page's debug ID for a script URL (keys compared without query), or None."""
    if not debug_ids or not url:
        return None
    found = debug_ids.get(url)
    if found is None:
        bare = strip_query(url)
        for key, value in debug_ids.items():
            if strip_query(key) == bare:
                found = value
                break
    return normalize_debug_id(found) if found else None


def _ref(site_id: str, row: sqlite3.Row | tuple[object, ...]) -> MapRef:
    return MapRef(site_id, str(row[0]), str(row[1]), row[2], row[3])  # type: ignore[arg-type]


def build_index(
    conn: sqlite3.Connection,
    releases: Iterable[tuple[str, str]],
    debug_ids: Iterable[tuple[str, str]],
    *,
    blob_url: str,
    cache_bytes: int,
) -> MapIndex:
    """The stored maps for these (site, release) pairs and (site, debug ID) pairs."""
    index = MapIndex(blob_url=blob_url, cache_bytes=cache_bytes)
    for site_id, release in sorted(set(releases)):
        rows = conn.execute(
            "SELECT name, map_digest, js_digest, scopes_digest FROM sourcemap_files "
            "WHERE site_id = ? AND release = ? ORDER BY dist = '' , uploaded_at",
            (site_id, release),
        ).fetchall()
        if rows:
            # Later rows win: the empty dist, then the newest upload.
            index.by_name[(site_id, release)] = {str(r[0]): _ref(site_id, r) for r in rows}
    wanted = sorted(set(debug_ids))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        values = ",".join("(?, ?)" for _ in chunk)
        # A join from the wanted pairs uses the (site_id, debug_id) index; a row-value
        # `IN (VALUES ...)` made SQLite scan the whole table.
        for row in conn.execute(
            f"WITH k(s, d) AS (VALUES {values}) "
            "SELECT f.name, f.map_digest, f.js_digest, f.scopes_digest, f.site_id, f.debug_id "
            "FROM k JOIN sourcemap_files f ON f.site_id = k.s AND f.debug_id = k.d "
            "ORDER BY f.uploaded_at",
            tuple(x for pair in chunk for x in pair),
        ):
            index.by_debug_id[(str(row[4]), str(row[5]))] = _ref(str(row[4]), row)
    content = repr((sorted((k, sorted(v.items())) for k, v in index.by_name.items()),
                    sorted(index.by_debug_id.items())))  # fmt: skip
    index.token = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return index


@dataclass(frozen=True, slots=True)
class Resolved:
    """A parsed map with what helps name functions: the scope index and the minified file."""

    ref: MapRef
    map: LoadedMap
    scopes: ScopeIndex | None
    minified: bytes | None


class MapCache:
    """Parsed maps by digest, least recently used dropped first, bounded by estimated bytes.

    A map that cannot be read or parsed is remembered for a while (not retried per failure),
    counted in `errors` and logged once.
    """

    def __init__(self, blobs: BlobStore, max_bytes: int) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Resolved, int]] = OrderedDict()
        self._failed: dict[str, float] = {}
        self._total = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.errors = 0
        self.errors_since_reset = 0  # failed loads/lookups since a caller last looked

    @property
    def resident_bytes(self) -> int:
        """Estimated bytes held."""
        return self._total

    def get(self, ref: MapRef, now: float) -> Resolved | None:
        """The parsed map of a ref, or None when it is missing or corrupt."""
        key = f"{ref.map_digest}:{ref.js_digest}:{ref.scopes_digest}"
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item[0]
            if self._failed.get(key, 0.0) > now:
                return None
            self.misses += 1
        try:
            resolved, cost = self._load(ref)
        except (SourceMapError, OSError, ValueError) as exc:
            # A corrupt or missing map never blocks clustering: the frame stays minified.
            log.warning("source map %s (%s) unusable: %s", ref.name, ref.map_digest[:12], exc)
            with self._lock:
                self.errors += 1
                self._failed[key] = now + _FAILED_RETRY_S
            return None
        with self._lock:
            if key not in self._items:
                self._items[key] = (resolved, cost)
                self._total += cost
            while self._total > self.max_bytes and len(self._items) > 1:
                _, (_, old) = self._items.popitem(last=False)
                self._total -= old
        return resolved

    def _load(self, ref: MapRef) -> tuple[Resolved, int]:
        raw = self.blobs.get(sourcemap_key(ref.site_id, ref.map_digest))
        handle = load_map(raw)
        scopes = None
        if ref.scopes_digest:
            scopes = ScopeIndex.from_json(
                self.blobs.get(sourcemap_key(ref.site_id, ref.scopes_digest))
            )
        minified = None
        if ref.js_digest and handle.info.sources_with_content < handle.info.sources:
            # Only needed to name functions from the minified AST when sources are missing.
            minified = self.blobs.get(sourcemap_key(ref.site_id, ref.js_digest))
        cost = _COST_FACTOR * len(raw) + len(minified or b"") + 4096
        return Resolved(ref, handle, scopes, minified), cost


_caches: dict[str, MapCache] = {}
_caches_lock = threading.Lock()


def cache_for(blob_url: str, max_bytes: int) -> MapCache:
    """This process's cache for one blob store (lives as long as the compute process)."""
    with _caches_lock:
        cache = _caches.get(blob_url)
        if cache is None:
            cache = _caches[blob_url] = MapCache(BlobStore(blob_url), max_bytes)
        cache.max_bytes = max_bytes
        return cache
