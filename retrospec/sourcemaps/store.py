"""The source map store: blobs by content digest, rows per (site, release, dist, artifact name).

Owns the tables `sourcemap_files` and `sourcemap_refresh`. Every front door (the CLI, the CI
upload endpoint, fetch mode, later a Sentry-compatible one) stores through store_artifacts:
validate and index the maps (CPU, no transaction), write the blobs, then one short transaction
for the rows. A 2xx or a CLI success means the rows are committed; invalid input stores nothing.

Blobs are content-addressed per site (storage/blobs.sourcemap_key), so a release that re-uploads
identical files shares them. A blob goes when no row names its digest: deletes and retention
queue it, and the orphan sweep is the backstop. An upload that races such a delete re-writes any
blob that vanished after its rows committed.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from retrospec.clock import iso, now_ms
from retrospec.errors import BadRequest
from retrospec.sourcemaps.maps import (
    MapInfo,
    SourceMapError,
    check_pair,
    load_map,
    sources_content,
)
from retrospec.sourcemaps.scopes import ScopeIndex
from retrospec.sourcemaps.upload import ArtifactFile
from retrospec.storage.blobs import BlobStore, sourcemap_key

MAX_RELEASE_CHARS = 256
MAX_NAME_CHARS = 2048

WriteCall = Callable[[Callable[[sqlite3.Connection], Any]], Any]


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One row of the store."""

    id: int
    site_id: str
    release: str
    dist: str
    name: str
    debug_id: str | None
    map_digest: str
    map_bytes: int
    js_digest: str | None
    js_bytes: int | None
    scopes_digest: str | None
    sources: int
    sources_with_content: int
    origin: str
    uploaded_at: int
    pinned: bool


_COLUMNS = (
    "id, site_id, release, dist, name, debug_id, map_digest, map_bytes, js_digest, js_bytes, "
    "scopes_digest, sources, sources_with_content, origin, uploaded_at, pinned"
)


def _row(r: Sequence[Any]) -> StoredFile:
    return StoredFile(
        id=int(r[0]),
        site_id=str(r[1]),
        release=str(r[2]),
        dist=str(r[3]),
        name=str(r[4]),
        debug_id=r[5],
        map_digest=str(r[6]),
        map_bytes=int(r[7]),
        js_digest=r[8],
        js_bytes=None if r[9] is None else int(r[9]),
        scopes_digest=r[10],
        sources=int(r[11]),
        sources_with_content=int(r[12]),
        origin=str(r[13]),
        uploaded_at=int(r[14]),
        pinned=bool(r[15]),
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """One validated artifact: its map's facts and the blobs to write (digest -> bytes)."""

    file: ArtifactFile
    info: MapInfo
    debug_id: str | None
    js_digest: str | None
    scopes_digest: str | None
    blobs: dict[str, bytes]
    warnings: tuple[str, ...]


@dataclass(slots=True)
class StoreResult:
    """What store_artifacts stored."""

    site_id: str
    release: str
    dist: str
    files: list[StoredFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes_written: int = 0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_release(release: str | None, dist: str | None) -> tuple[str, str]:
    """A release and dist as stored (BadRequest when empty or too long)."""
    rel = (release or "").strip()
    if not rel or len(rel) > MAX_RELEASE_CHARS or any(ord(c) < 32 for c in rel):
        raise BadRequest(f"release must be 1-{MAX_RELEASE_CHARS} printable characters")
    dst = (dist or "").strip()
    if len(dst) > MAX_RELEASE_CHARS or any(ord(c) < 32 for c in dst):
        raise BadRequest(f"dist must be at most {MAX_RELEASE_CHARS} printable characters")
    return rel, dst


def prepare(files: Sequence[ArtifactFile]) -> list[Prepared]:
    """Validate every map (and its pairing with its bundle) and index its functions.

    CPU work (JSON, symbolic, tree-sitter): run it outside any transaction. The first bad file
    raises a SourceMapError naming it, so nothing of the upload is stored.
    """
    out: list[Prepared] = []
    seen: set[str] = set()
    for f in files:
        if not f.name or len(f.name) > MAX_NAME_CHARS or any(ord(c) < 32 for c in f.name):
            raise BadRequest(f"invalid artifact name {f.name[:80]!r}")
        if f.name in seen:
            raise BadRequest(f"{f.name}: named twice in one upload")
        seen.add(f.name)
        try:
            handle = load_map(f.map)
            warnings = check_pair(f.js, handle) if f.js is not None else []
        except SourceMapError as exc:
            raise type(exc)(f"{f.name}: {exc.message}") from None
        info = handle.info
        debug_id = f.debug_id or info.debug_id
        blobs = {info.digest: f.map}
        js_digest = None
        if f.js is not None:
            js_digest = _digest(f.js)
            blobs[js_digest] = f.js
        scopes_digest = None
        embedded = sources_content(handle)
        if embedded:
            scopes = ScopeIndex.build(embedded).to_json()
            scopes_digest = _digest(scopes)
            blobs[scopes_digest] = scopes
        else:
            warnings = [*warnings, "the map embeds no sources (no context lines)"]
        out.append(Prepared(f, info, debug_id, js_digest, scopes_digest, blobs, tuple(warnings)))
    return out


def _insert(
    conn: sqlite3.Connection,
    site_id: str,
    release: str,
    dist: str,
    prepared: Sequence[Prepared],
    origin: str,
    at: int,
) -> list[StoredFile]:
    conn.executemany(
        "INSERT INTO sourcemap_files (site_id, release, dist, name, debug_id, map_digest, "
        "map_bytes, js_digest, js_bytes, scopes_digest, sources, sources_with_content, origin, "
        "uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (site_id, release, dist, name) DO UPDATE SET debug_id = excluded.debug_id, "
        "map_digest = excluded.map_digest, map_bytes = excluded.map_bytes, "
        "js_digest = excluded.js_digest, js_bytes = excluded.js_bytes, "
        "scopes_digest = excluded.scopes_digest, sources = excluded.sources, "
        "sources_with_content = excluded.sources_with_content, origin = excluded.origin, "
        "uploaded_at = excluded.uploaded_at",
        [
            (site_id, release, dist, p.file.name, p.debug_id, p.info.digest, p.info.size,
             p.js_digest, None if p.file.js is None else len(p.file.js), p.scopes_digest,
             p.info.sources, p.info.sources_with_content, origin, at)
            for p in prepared
        ],
    )  # fmt: skip
    # Failures of this release (or, by debug ID, of any) may already be clustered on
    # minified frames: the cluster job re-symbolicates their displayed frames.
    queued = {(site_id, release)}
    if any(p.debug_id for p in prepared):
        queued.add((site_id, ""))
    conn.executemany(
        "INSERT INTO sourcemap_refresh (site_id, release, queued_at) VALUES (?, ?, ?) "
        "ON CONFLICT (site_id, release) DO UPDATE SET queued_at = excluded.queued_at",
        [(s, r, at) for s, r in sorted(queued)],
    )
    names = [p.file.name for p in prepared]
    return [
        f for f in list_files(conn, site_id, release=release, dist=dist) if f.name in set(names)
    ]


def store_artifacts(
    write: WriteCall,
    blobs: BlobStore,
    site_id: str,
    release: str,
    dist: str,
    files: Sequence[ArtifactFile],
    *,
    origin: str = "upload",
    prepared: Sequence[Prepared] | None = None,
) -> StoreResult:
    """Store bundles and maps for one site and release: validate, blobs, then one transaction.

    `write` runs a function in a write transaction (Writer.call in the server's threads,
    DirectWriter.call in the CLI). `prepared` skips validation when the caller did it already.
    """
    release, dist = check_release(release, dist)
    items = list(prepared) if prepared is not None else prepare(files)
    result = StoreResult(site_id, release, dist)
    keys: dict[str, bytes] = {}
    for p in items:
        for digest, body in p.blobs.items():
            keys[sourcemap_key(site_id, digest)] = body
        result.warnings += [f"{p.file.name}: {w}" for w in p.warnings]
    for key, body in keys.items():
        # Always written (not skipped when present): a concurrent purge may be deleting it.
        result.bytes_written += blobs.put(key, body)
    at = now_ms()
    result.files = write(lambda c: _insert(c, site_id, release, dist, items, origin, at))
    for key, body in keys.items():
        if not blobs.exists(key):  # deleted by a purge that ran between our put and commit
            blobs.put(key, body)
    return result


def file_json(f: StoredFile) -> dict[str, Any]:
    """One stored file in JSON output."""
    return {
        "release": f.release,
        "dist": f.dist or None,
        "name": f.name,
        "debug_id": f.debug_id,
        "map_bytes": f.map_bytes,
        "js_bytes": f.js_bytes,
        "sources": f.sources,
        "sources_with_content": f.sources_with_content,
        "origin": f.origin,
        "uploaded_at": iso(f.uploaded_at),
        "pinned": f.pinned,
    }


def result_json(result: StoreResult, site_name: str) -> dict[str, Any]:
    """What `sourcemaps upload --json` (and the CI endpoint) answer."""
    return {
        "schema_version": 1,
        "site": {"id": result.site_id, "name": site_name},
        "release": result.release,
        "dist": result.dist or None,
        "files": [file_json(f) for f in result.files],
        "warnings": result.warnings,
    }


# --- reads -------------------------------------------------------------------------------------


def list_files(
    conn: sqlite3.Connection,
    site_id: str,
    *,
    release: str | None = None,
    dist: str | None = None,
) -> list[StoredFile]:
    """Stored files of a site (one release, or all), newest release upload first."""
    where = ["site_id = ?"]
    params: list[Any] = [site_id]
    if release is not None:
        where.append("release = ?")
        params.append(release)
    if dist is not None:
        where.append("dist = ?")
        params.append(dist)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM sourcemap_files WHERE {' AND '.join(where)} "
        "ORDER BY uploaded_at DESC, release, dist, name",
        params,
    ).fetchall()
    return [_row(r) for r in rows]


def releases_with_maps(conn: sqlite3.Connection, site_id: str) -> dict[str, int]:
    """release -> number of stored maps, for one site."""
    rows = conn.execute(
        "SELECT release, count(*) FROM sourcemap_files WHERE site_id = ? GROUP BY release",
        (site_id,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def has_maps(conn: sqlite3.Connection, site_id: str, release: str | None) -> bool:
    """Whether a release of a site has any stored map."""
    if release is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM sourcemap_files WHERE site_id = ? AND release = ? LIMIT 1",
        (site_id, release),
    ).fetchone()
    return row is not None


def digest_referenced(conn: sqlite3.Connection, site_id: str, digest: str) -> bool:
    """Whether any row of the site names this digest (as map, bundle or scope index)."""
    row = conn.execute(
        "SELECT 1 FROM sourcemap_files WHERE site_id = ? AND (map_digest = ? OR js_digest = ? "
        "OR scopes_digest = ?) LIMIT 1",
        (site_id, digest, digest, digest),
    ).fetchone()
    return row is not None


def _digests(files: Iterable[StoredFile]) -> set[str]:
    out: set[str] = set()
    for f in files:
        out.add(f.map_digest)
        if f.js_digest:
            out.add(f.js_digest)
        if f.scopes_digest:
            out.add(f.scopes_digest)
    return out


# --- writes ------------------------------------------------------------------------------------


def delete_release(conn: sqlite3.Connection, site_id: str, release: str) -> tuple[int, list[str]]:
    """Delete a release's rows (on the writer); return the count and the blob keys now unused."""
    files = list_files(conn, site_id, release=release)
    conn.execute(
        "DELETE FROM sourcemap_files WHERE site_id = ? AND release = ?", (site_id, release)
    )
    unused = [
        sourcemap_key(site_id, d)
        for d in sorted(_digests(files))
        if not digest_referenced(conn, site_id, d)
    ]
    return len(files), unused


def set_pinned(conn: sqlite3.Connection, site_id: str, release: str, pinned: bool) -> int:
    """Pin (keep past retention) or unpin a release's maps; returns the rows changed."""
    return int(
        conn.execute(
            "UPDATE sourcemap_files SET pinned = ? WHERE site_id = ? AND release = ?",
            (1 if pinned else 0, site_id, release),
        ).rowcount
    )


def expired_releases(
    conn: sqlite3.Connection, cutoff_of: Callable[[str], int], max_cutoff: int
) -> list[tuple[str, str]]:
    """(site, release) whose maps retention may drop: not pinned, uploaded before the site's
    cutoff, and no session of that release started since then."""
    rows = conn.execute(
        "SELECT site_id, release, max(uploaded_at), max(pinned) FROM sourcemap_files "
        "GROUP BY site_id, release HAVING max(uploaded_at) < ? AND max(pinned) = 0",
        (max_cutoff,),
    ).fetchall()
    out: list[tuple[str, str]] = []
    for site_id, release, uploaded, _pinned in rows:
        cutoff = cutoff_of(str(site_id))
        if int(uploaded) >= cutoff:
            continue
        recent = conn.execute(
            "SELECT 1 FROM sessions WHERE site_id = ? AND release = ? AND started_at >= ? LIMIT 1",
            (site_id, release, cutoff),
        ).fetchone()
        if recent is None:
            out.append((str(site_id), str(release)))
    return out


def take_refresh(conn: sqlite3.Connection, limit: int = 20) -> list[tuple[str, str, int]]:
    """The oldest queued (site, release, queued_at) refreshes (read; done_refresh removes)."""
    rows = conn.execute(
        "SELECT site_id, release, queued_at FROM sourcemap_refresh ORDER BY queued_at LIMIT ?",
        (limit,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def done_refresh(conn: sqlite3.Connection, entries: Sequence[tuple[str, str, int]]) -> None:
    """Remove handled refreshes (unless a newer upload re-queued them meanwhile)."""
    conn.executemany(
        "DELETE FROM sourcemap_refresh WHERE site_id = ? AND release = ? AND queued_at = ?",
        list(entries),
    )
