"""Static assets served from an in-memory index, with content-hashed URLs, pre-compressed."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from litestar import Request, Response, get
from litestar.params import FromPath

from retrospec.paths import assets_dir
from retrospec.web.compress import choose, compress, response_codings

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"
# Text assets are compressed once per process, at every start. Brotli's top level (11) would
# send 7.6% fewer bytes (183 against 198 kB for all of them) for 1.8 s of CPU per start instead
# of 45 ms; browsers cache these for a year, so a start pays little and a visitor barely more.
_TEXT = ("text/", "image/svg+xml", "application/json")
_LEVELS = {"gzip": 9, "br": 5}
_MIN_BYTES = 512  # smaller bodies gain less than the header costs
log = logging.getLogger("retrospec")
# Compressed variants by (content digest, coding), shared by every index in the process: the
# same file compresses to the same bytes, so an app built again (tests, reloads) pays nothing.
_VARIANTS: dict[tuple[str, str], bytes] = {}
_warm_once = threading.Lock()  # held for good by the first warm_in_background


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes, content type and digest."""

    body: bytes
    content_type: str
    digest: str


class AssetIndex:
    """Every file under assets/ loaded once; requests look names up, never touch the disk."""

    def __init__(self, root: Path | None = None) -> None:
        root = root or assets_dir()
        self.files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            body = path.read_bytes()
            ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
            self.files[path.relative_to(root).as_posix()] = Asset(
                body=body,
                content_type=ctype or "application/octet-stream",
                digest=hashlib.sha256(body).hexdigest()[:12],
            )

    def url(self, name: str) -> str:
        """URL of an asset with its content hash, for templates."""
        asset = self.files.get(name)
        if asset is None:
            raise KeyError(f"no asset {name!r}")
        return f"/assets/{name}?v={asset.digest}"

    def compressible(self, name: str) -> bool:
        """Whether responses for this asset are compressed when the client accepts it."""
        asset = self.files[name]
        return asset.content_type.startswith(_TEXT) and len(asset.body) > _MIN_BYTES

    def packed(self, name: str, coding: str) -> bytes | None:
        """The compressed variant if it is made already (no work on the caller's thread)."""
        return _VARIANTS.get((self.files[name].digest, coding))

    def variant(self, name: str, coding: str) -> bytes:
        """The asset compressed with coding, made on first use and kept."""
        packed = self.packed(name, coding)
        if packed is None:
            # Two threads may both make it once; the result is the same bytes.
            asset = self.files[name]
            packed = compress(asset.body, coding, level=_LEVELS[coding])
            _VARIANTS[(asset.digest, coding)] = packed
        return packed

    def warm(self) -> None:
        """Make every compressed variant now, so no visitor waits for one.

        Made on the first request instead, on the event loop, the replay player's variant cost
        the first replay open after a start 0.36 s (at brotli's level 11, then).
        """
        for name in self.files:
            if self.compressible(name):
                for coding in response_codings():
                    self.variant(name, coding)

    def warm_in_background(self) -> threading.Thread | None:
        """Start warm() on a daemon thread, once per process (a start never waits for it).

        The compressors let go of the GIL, so it runs beside the event loop; on Linux the
        thread is also niced, so ingest keeps its share of the CPU while a server starts.
        """
        if not _warm_once.acquire(blocking=False):
            return None

        def run() -> None:
            if sys.platform.startswith("linux"):
                # Not allowed here: run at the normal priority.
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            try:
                self.warm()
            except Exception:  # a variant not made now is made on first use instead
                log.exception("compressing the static assets ahead of use failed")

        thread = threading.Thread(target=run, name="retrospec-assets", daemon=True)
        thread.start()
        return thread


async def asset_response(
    index: AssetIndex, name: str, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Serve one indexed asset; hashed URLs are cached forever, others revalidated."""
    asset = index.files.get(name)
    if asset is None:
        return Response(b'{"error": "not found"}', status_code=404, media_type="application/json")
    coding = None
    if index.compressible(name):
        coding = choose(request.headers.get("accept-encoding", ""), response_codings())
    # Each encoding is its own representation, so its own strong validator.
    etag = f'"{asset.digest}-{coding}"' if coding else f'"{asset.digest}"'
    cache = IMMUTABLE if request.query_params.get("v") == asset.digest else "public, max-age=300"
    headers = {
        "cache-control": cache,
        "etag": etag,
        "x-content-type-options": "nosniff",
        "vary": "Accept-Encoding",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    body = asset.body
    if coding is not None:
        packed = index.packed(name, coding)
        if packed is None:
            # Not warmed yet (a request right after the start): compress on a worker thread,
            # never on the event loop that ingest shares.
            packed = await anyio.to_thread.run_sync(index.variant, name, coding)
        body = packed
        headers["content-encoding"] = coding
    return Response(body, media_type=asset.content_type, headers=headers)


@get("/assets/{name:path}", include_in_schema=False)
async def serve_asset(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
    """GET /assets/<name>: a file from the asset index."""
    index: AssetIndex = request.app.state.assets
    return await asset_response(index, name.lstrip("/"), request)
