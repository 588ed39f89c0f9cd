"""Sentry's chunked upload, the protocol `sentry-cli sourcemaps upload` and the Sentry bundler
plugins speak: the client asks for chunk options, sends an artifact bundle's SHA-1-named chunks
(gzip-compressed) and asks the server to assemble them; the bundle then goes into the same
source map store as `retrospec sourcemaps upload`.

Chunks are stored as blobs under the site, so a client may send them in any number of requests;
they stay an hour after the last use (purge's orphan sweep), which keeps a repeated assemble of
the same bundle (a retry, `--wait` polling) answerable without sending them again.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from retrospec.errors import BadRequest, PayloadTooLarge, RetrospecError
from retrospec.sourcemaps.bundles import read_bundle
from retrospec.sourcemaps.store import StoreResult, store_artifacts
from retrospec.sourcemaps.upload import Budget
from retrospec.storage.blobs import BlobStore, upload_chunk_key

CHUNK_SIZE = 8 << 20
CHUNKS_PER_REQUEST = 8
# gzip of incompressible data is a little larger than the data; leave room for headers too.
MAX_REQUEST_BYTES = CHUNKS_PER_REQUEST * (CHUNK_SIZE + (64 << 10))
# Releases for bundles uploaded without `--release`: their maps match by debug ID only.
DEBUG_ID_RELEASE = "(debug ids)"
_SHA1 = re.compile(r"\A[0-9a-f]{40}\Z")

WriteCall = Callable[[Callable[[Any], Any]], Any]


def chunk_options(org: str, max_upload_bytes: int) -> dict[str, Any]:
    """The answer to GET chunk-upload: where and how to send chunks.

    The URL is relative (to /api/0/), which sentry-cli resolves against the address it was given,
    so it holds behind any proxy without trusting a Host header.
    """
    return {
        "url": f"organizations/{org}/chunk-upload/",
        "chunkSize": CHUNK_SIZE,
        "chunksPerRequest": CHUNKS_PER_REQUEST,
        "maxFileSize": max_upload_bytes,
        "maxRequestSize": MAX_REQUEST_BYTES,
        "concurrency": 1,
        "hashAlgorithm": "sha1",
        "compression": ["gzip"],
        # sentry-cli 2.x uploads artifact bundles only when the server lists them.
        "accept": ["release_files", "sources", "artifact_bundles", "artifact_bundles_v2"],
    }


def _gunzip(data: bytes, name: str) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, CHUNK_SIZE + 1)
    except zlib.error as exc:
        raise BadRequest(f"chunk {name}: not gzip ({exc})") from None
    if len(out) > CHUNK_SIZE or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"chunk {name} is over the {CHUNK_SIZE}-byte chunk size")
    if not inflater.eof:
        raise BadRequest(f"chunk {name}: truncated gzip data")
    return out


def store_chunks(blobs: BlobStore, site_id: str, parts: Sequence[tuple[str, bytes, bool]]) -> int:
    """Store (sha1 name, body, gzipped) chunks after checking each body hashes to its name; all
    are checked before any is stored. Returns how many were stored."""
    checked: list[tuple[str, bytes]] = []
    for name, body, gzipped in parts:
        if not _SHA1.match(name):
            raise BadRequest(f"chunk name {name[:60]!r} is not a SHA-1 checksum")
        data = _gunzip(body, name) if gzipped else body
        if len(data) > CHUNK_SIZE:
            raise PayloadTooLarge(f"chunk {name} is over the {CHUNK_SIZE}-byte chunk size")
        if hashlib.sha1(data).hexdigest() != name:  # noqa: S324 - the protocol's checksum
            raise BadRequest(f"chunk {name}: its content does not match its checksum")
        checked.append((name, data))
    for name, data in checked:
        blobs.put(upload_chunk_key(site_id, name), data)
    return len(checked)


class AssembleRequest(msgspec.Struct, forbid_unknown_fields=False):
    """The body of POST artifactbundle/assemble/."""

    checksum: str
    chunks: list[str]
    version: str | None = None
    dist: str | None = None
    projects: list[str] = []


_DECODER = msgspec.json.Decoder(AssembleRequest)


def parse_assemble(body: bytes, max_upload_bytes: int) -> AssembleRequest:
    """A validated assemble request (BadRequest naming what is wrong)."""
    try:
        req = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid assemble request: {exc}") from None
    if not _SHA1.match(req.checksum):
        raise BadRequest("checksum must be a SHA-1 hex digest")
    if not req.chunks or any(not _SHA1.match(c) for c in req.chunks):
        raise BadRequest("chunks must be a non-empty list of SHA-1 hex digests")
    if len(req.chunks) > max_upload_bytes // CHUNK_SIZE + 1:
        raise PayloadTooLarge(f"the bundle is over the {max_upload_bytes}-byte upload limit")
    return req


def missing_chunks(blobs: BlobStore, site_id: str, chunks: Sequence[str]) -> list[str]:
    """The chunks of a bundle not stored yet, in order, each once."""
    seen: set[str] = set()
    out: list[str] = []
    for c in chunks:
        if c not in seen and not blobs.exists(upload_chunk_key(site_id, c)):
            out.append(c)
        seen.add(c)
    return out


@dataclass(frozen=True, slots=True)
class Assembled:
    """What assemble did: Sentry's state words, and what was stored when it worked."""

    state: str  # not_found | ok | error
    missing: list[str]
    detail: str | None = None
    result: StoreResult | None = None

    def json(self) -> dict[str, Any]:
        """The response body sentry-cli reads."""
        return {"state": self.state, "missingChunks": self.missing, "detail": self.detail}


def assemble(
    write: WriteCall,
    blobs: BlobStore,
    site_id: str,
    req: AssembleRequest,
    max_upload_bytes: int,
) -> Assembled:
    """Join the chunks, check the bundle's checksum, store its maps (all or nothing).

    Errors in the bundle are answered as Sentry does, `state: error` with a detail the CLI
    prints; only a malformed request is an HTTP error.
    """
    missing = missing_chunks(blobs, site_id, req.chunks)
    if missing:
        return Assembled("not_found", missing)
    parts: list[bytes] = []
    size = 0
    for c in req.chunks:
        data = blobs.get(upload_chunk_key(site_id, c))
        size += len(data)
        if size > max_upload_bytes:
            return Assembled("error", [], f"the bundle is over the {max_upload_bytes}-byte limit")
        parts.append(data)
    data = b"".join(parts)
    if hashlib.sha1(data).hexdigest() != req.checksum:  # noqa: S324 - the protocol's checksum
        return Assembled("error", [], "the joined chunks do not match the bundle checksum")
    try:
        bundle = read_bundle(data, Budget(max_upload_bytes))
        release = req.version or bundle.release
        if not release:
            if not all(f.debug_id for f in bundle.files):
                raise BadRequest(
                    "give a release (--release): files without debug IDs match by release"
                )
            release = DEBUG_ID_RELEASE
        result = store_artifacts(
            write,
            blobs,
            site_id,
            release,
            req.dist or bundle.dist or "",
            bundle.files,
            origin="sentry-cli",
        )
    except RetrospecError as exc:
        return Assembled("error", [], exc.message)
    result.warnings = bundle.warnings + result.warnings
    return Assembled("ok", [], None, result)
