"""Static assets served from an in-memory index, with content-hashed URLs, pre-compressed."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# Text assets are compressed once per process (best levels: paid once, not per request).
_TEXT = ("text/", "image/svg+xml", "application/json")
_BEST = {"gzip": 9, "br": 11}


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
        self._packed: dict[tuple[str, str], bytes] = {}
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

    def variant(self, name: str, coding: str) -> bytes:
        """The asset compressed with coding, made on first use and kept."""
        packed = self._packed.get((name, coding))
        if packed is None:
            # Two threads may both make it once; the result is the same bytes.
            packed = compress(self.files[name].body, coding, level=_BEST[coding])
            self._packed[(name, coding)] = packed
        return packed


def asset_response(
    index: AssetIndex, name: str, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Serve one indexed asset; hashed URLs are cached forever, others revalidated."""
    asset = index.files.get(name)
    if asset is None:
        return Response(b'{"error": "not found"}', status_code=404, media_type="application/json")
    coding = None
    if asset.content_type.startswith(_TEXT) and len(asset.body) > 512:
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
        body = index.variant(name, coding)
        headers["content-encoding"] = coding
    return Response(body, media_type=asset.content_type, headers=headers)


@get("/assets/{name:path}", include_in_schema=False, sync_to_thread=False)
def serve_asset(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
    """GET /assets/<name>: a file from the asset index."""
    index: AssetIndex = request.app.state.assets
    return asset_response(index, name.lstrip("/"), request)
