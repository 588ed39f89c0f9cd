"""Sentry artifact bundles (what `sentry-cli sourcemaps upload` and the Sentry bundler plugins
send) read into the same artifacts as our own uploads.

A bundle is `SYSB` + a little-endian u32 format version, then an ordinary zip holding
`manifest.json` and the files under `files/...`. The manifest names each file's URL (`~/path`
for any origin, or a full URL), its type (`minified_source`, `source_map`, `source`) and
headers (`debug-id`, `sourcemap`). Members go through the same checks as an uploaded zip
(traversal, links, zip bombs, size and count limits) and the same pairing, per origin.
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from retrospec.sourcemaps.upload import (
    ArtifactFile,
    Budget,
    UploadRejected,
    archive_members,
    pair,
    safe_relative,
)

MAGIC = b"SYSB"
MAX_MANIFEST_BYTES = 16 << 20
_TYPES = ("minified_source", "source_map", "source")


@dataclass(slots=True)
class Bundle:
    """The artifacts of one bundle, with the release and dist its manifest names (if any)."""

    files: list[ArtifactFile] = field(default_factory=list)
    release: str | None = None
    dist: str | None = None
    warnings: list[str] = field(default_factory=list)


def _zip_body(data: bytes) -> bytes:
    if data[:4] == MAGIC:
        return data[8:]
    if data[:2] == b"PK":
        return data  # an older bundle format: a bare zip with the same manifest
    raise UploadRejected("not a Sentry artifact bundle (no SYSB header, no zip)")


def _manifest(body: bytes) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            info = archive.getinfo("manifest.json")
            if info.file_size > MAX_MANIFEST_BYTES:
                raise UploadRejected("the bundle's manifest.json is too large")
            doc = json.loads(archive.read(info))
    except KeyError:
        raise UploadRejected("the bundle has no manifest.json") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRejected(f"the bundle is not a valid zip ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise UploadRejected("the bundle's manifest.json has no files")
    return doc


def _origin_and_path(url: str) -> tuple[str, str]:
    """`~/assets/a.js` -> ("~/", "assets/a.js"); `https://h/x/a.js` -> ("https://h", "x/a.js")."""
    if url.startswith("~/"):
        return "~/", url[2:]
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")
    raise UploadRejected(f"bundle file url {url[:120]!r} is neither ~/path nor http(s)")


def _text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UploadRejected(f"the bundle's {what} is not a string")
    return value.strip() or None


def read_bundle(data: bytes, budget: Budget) -> Bundle:
    """The artifacts of a Sentry artifact bundle (UploadRejected/UploadTooLarge when bad)."""
    body = _zip_body(data)
    manifest = _manifest(body)
    entries: dict[str, tuple[str, str]] = {}  # zip path -> (origin, relative path)
    for zip_path, entry in manifest["files"].items():
        if not isinstance(entry, dict) or entry.get("type") not in _TYPES:
            continue
        url = _text(entry.get("url"), f"url of {zip_path!r}")
        if url is None:
            continue
        origin, rel = _origin_and_path(url)
        entries[safe_relative(str(zip_path), "bundle")] = (origin, safe_relative(rel, url))
    by_origin: dict[str, list[tuple[str, bytes]]] = {}
    for zip_path, content in archive_members(body, "bundle.zip", budget):
        if zip_path in entries:
            origin, rel = entries[zip_path]
            by_origin.setdefault(origin, []).append((rel, content))
    out = Bundle(
        release=_text(manifest.get("release"), "release"),
        dist=_text(manifest.get("dist"), "dist"),
    )
    for origin, members in sorted(by_origin.items()):
        collected = pair(iter(members), origin if origin == "~/" else f"{origin}/")
        out.files += collected.files
        out.warnings += collected.warnings
    if not out.files:
        raise UploadRejected("the bundle has no source maps")
    names = [f.name for f in out.files]
    if len(set(names)) != len(names):
        dupes = sorted({posixpath.basename(n) for n in names if names.count(n) > 1})
        raise UploadRejected(f"the bundle names a file twice: {', '.join(dupes[:3])}")
    return out
