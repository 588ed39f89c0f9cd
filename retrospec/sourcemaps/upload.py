"""What an upload holds: files from directories, zip and tar archives, paired bundle <-> map.

Archives are read in memory and never extracted, so a hostile member name can only produce an
error: absolute paths, `..`, links, device files, zip bombs and the size and count limits each
give their own message, and nothing is stored unless the whole upload is valid.

Pairing per bundle (as sentry-cli does): its `//# sourceMappingURL=` (relative to the bundle;
`data:` is an inline map), else `<name>.map` beside it, else a map with the same debug ID.
Artifact names are `PREFIX/relative/path`; the default prefix `~/` means "any origin".
"""

from __future__ import annotations

import io
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from retrospec.errors import BadRequest, PayloadTooLarge
from retrospec.sourcemaps.maps import (
    MAX_MAP_BYTES,
    debug_id_of,
    inline_map_of,
    source_mapping_url_of,
)

JS_SUFFIXES = (".js", ".mjs", ".cjs")
MAX_FILES = 20_000
MAX_ZIP_RATIO = 200  # declared size / compressed size; beyond this it is a zip bomb
MAX_NAME_CHARS = 1024
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class UploadRejected(BadRequest):
    """An upload that is unsafe or unusable (traversal, links, bombs, nothing to store)."""


class UploadTooLarge(PayloadTooLarge):
    """An upload over the size or count limits."""


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One bundle with its map, ready for the store (the Sentry front door builds these too)."""

    name: str  # "~/assets/main-Z52FPQJ4.js" or a full URL without query
    js: bytes | None  # the minified file, when the upload had it
    map: bytes
    debug_id: str | None


@dataclass(slots=True)
class Collected:
    """The paired artifacts of one upload, and what the user should know about it."""

    files: list[ArtifactFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Budget:
    """Size and count limits over a whole upload."""

    def __init__(self, max_total: int, max_file: int = MAX_MAP_BYTES) -> None:
        self.max_total = max_total
        self.max_file = max_file
        self.total = 0
        self.count = 0

    def take(self, size: int, what: str) -> None:
        """Account for one file; raise when a limit is passed."""
        if size > self.max_file:
            raise UploadTooLarge(
                f"{what} is {size} bytes, over the {self.max_file}-byte file limit"
            )
        self.total += size
        self.count += 1
        if self.total > self.max_total:
            raise UploadTooLarge(f"the upload is over the {self.max_total}-byte limit")
        if self.count > MAX_FILES:
            raise UploadTooLarge(f"the upload has more than {MAX_FILES} files")


def safe_relative(name: str, origin: str) -> str:
    """A member path normalised to `a/b.js`; traversal and absolute paths are refused."""
    raw = name.replace("\\", "/")
    if "\x00" in raw or len(raw) > MAX_NAME_CHARS:
        raise UploadRejected(f"{origin}: invalid file name {name[:80]!r}")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UploadRejected(f"{origin}: absolute path {name!r} in the upload")
    norm = posixpath.normpath(raw)
    if norm in ("..", ".") or norm.startswith("../"):
        raise UploadRejected(f"{origin}: path {name!r} escapes the upload root")
    return norm


def _wanted(rel: str) -> bool:
    return rel.endswith(JS_SUFFIXES) or rel.endswith(".map")


def _zip_members(data: bytes, origin: str, budget: Budget) -> Iterator[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRejected(f"{origin}: not a valid zip archive ({exc})") from None
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            rel = safe_relative(info.filename, origin)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UploadRejected(f"{origin}: link {info.filename!r} in the archive")
            if not _wanted(rel):
                continue
            if info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO:
                raise UploadRejected(
                    f"{origin}: {info.filename!r} expands "
                    f"{info.file_size // info.compress_size}x (a zip bomb?)"
                )
            budget.take(info.file_size, f"{origin}:{info.filename}")
            try:
                with archive.open(info) as fh:
                    body = fh.read(info.file_size + 1)  # declared sizes can lie
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise UploadRejected(f"{origin}: {info.filename!r} is corrupt ({exc})") from None
            if len(body) != info.file_size:
                raise UploadRejected(f"{origin}: {info.filename!r} is not its declared size")
            yield rel, body


def _tar_members(data: bytes, origin: str, budget: Budget) -> Iterator[tuple[str, bytes]]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data))  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UploadRejected(f"{origin}: not a valid tar archive ({exc})") from None
    with archive:
        try:
            for member in archive:
                if member.isdir():
                    continue
                rel = safe_relative(member.name, origin)
                if member.issym() or member.islnk():
                    raise UploadRejected(
                        f"{origin}: link {member.name!r} -> {member.linkname!r} in the archive"
                    )
                if not member.isfile():
                    raise UploadRejected(f"{origin}: special file {member.name!r} in the archive")
                if not _wanted(rel):
                    continue
                budget.take(member.size, f"{origin}:{member.name}")
                handle = archive.extractfile(member)
                body = handle.read() if handle is not None else b""
                if len(body) != member.size:
                    raise UploadRejected(f"{origin}: {member.name!r} is truncated")
                yield rel, body
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise UploadRejected(f"{origin}: the tar archive is corrupt ({exc})") from None


def is_archive_name(name: str) -> bool:
    """Whether a file name looks like an archive we read."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_members(data: bytes, origin: str, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of the .js/.mjs/.cjs/.map members of a zip or tar (any gzip)."""
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        yield from _zip_members(data, origin, budget)
    else:
        yield from _tar_members(data, origin, budget)


def path_members(paths: list[Path], budget: Budget) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) for every bundle and map under directories, archives or files."""
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for file in sorted(path.rglob("*")):
                if file.is_symlink() and not file.resolve().is_relative_to(root):
                    raise UploadRejected(f"{file}: a link to outside {path}")
                rel = file.relative_to(path).as_posix()
                if not file.is_file() or "node_modules/" in f"/{rel}/" or not _wanted(rel):
                    continue
                budget.take(file.stat().st_size, str(file))
                yield rel, file.read_bytes()
        elif path.is_file() and is_archive_name(path.name):
            budget.take(path.stat().st_size, str(path))
            budget.count -= 1  # the archive's members count, not the archive
            budget.total -= path.stat().st_size
            yield from archive_members(path.read_bytes(), str(path), budget)
        elif path.is_file():
            if not _wanted(path.name):
                raise UploadRejected(f"{path}: not a .js, .mjs, .cjs or .map file, nor an archive")
            budget.take(path.stat().st_size, str(path))
            yield path.name, path.read_bytes()
        else:
            raise UploadRejected(f"{path}: no such file or directory")


def artifact_name(prefix: str, rel: str) -> str:
    """`~/` + `assets/main.js` -> `~/assets/main.js`; a URL prefix keeps its origin."""
    prefix = (prefix or "~/").strip()
    if not prefix.startswith(("~/", "http://", "https://", "/")) and prefix != "~":
        raise BadRequest(f"url prefix must start with ~/ or http(s)://, got {prefix!r}")
    if prefix.startswith("/"):
        prefix = "~" + prefix
    base = prefix.rstrip("/")
    return f"{base}/{rel}" if base else rel


def pair(members: Iterator[tuple[str, bytes]], url_prefix: str = "~/") -> Collected:
    """Pair bundles with their maps; every map becomes one artifact (used or not)."""
    files = dict(members)
    maps = {rel: body for rel, body in files.items() if rel.endswith(".map")}
    by_debug_id: dict[str, str] = {}
    for rel, content in maps.items():
        did = debug_id_of(content)
        if did:
            by_debug_id.setdefault(did, rel)
    out = Collected()
    used: set[str] = set()
    for rel, js in sorted(files.items()):
        if not rel.endswith(JS_SUFFIXES):
            continue
        did = debug_id_of(js)
        ref = source_mapping_url_of(js)
        map_rel: str | None = None
        body: bytes | None = None
        if ref and ref.startswith("data:"):
            body = inline_map_of(js)
        elif ref and "://" not in ref and not ref.startswith("/"):
            candidate = posixpath.normpath(
                posixpath.join(posixpath.dirname(rel), ref.split("?")[0])
            )
            if candidate in maps:
                map_rel = candidate
            else:
                out.warnings.append(f"{rel}: its sourceMappingURL {ref!r} is not in the upload")
        if body is None and map_rel is None and f"{rel}.map" in maps:
            map_rel = f"{rel}.map"
        if body is None and map_rel is None and did in by_debug_id:
            map_rel = by_debug_id[did or ""]
        if map_rel is not None:
            body = maps[map_rel]
            used.add(map_rel)
        if body is None:
            out.warnings.append(f"{rel}: no source map found; skipped")
            continue
        out.files.append(ArtifactFile(artifact_name(url_prefix, rel), js, body, did))
    for rel, content in sorted(maps.items()):
        if rel not in used:
            # A map alone still serves its bundle by name ("main.js.map" -> "main.js") or by ID.
            name = rel[: -len(".map")] if rel.endswith((".js.map", ".mjs.map", ".cjs.map")) else rel
            out.files.append(
                ArtifactFile(artifact_name(url_prefix, name), None, content, debug_id_of(content))
            )
    if not out.files:
        raise UploadRejected("the upload has no source maps (.map files or inline maps)")
    return out
