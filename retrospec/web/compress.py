"""Response compression: content negotiation, the HTML/JSON middleware, cached variants.

Pages and JSON are compressed per response (brotli when installed and accepted, else gzip, at
cheap levels); replay segments are sent as stored (zstd) or from a cache of their gzip form;
static assets are compressed once per process and kept. A response that already names its
Content-Encoding is left alone.
"""

from __future__ import annotations

import gzip
import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType
from typing import Any

# Per-response levels: HTML and JSON compress ~6-10x already at these, for ~1 ms per 100 kB.
GZIP_LEVEL = 5
BROTLI_QUALITY = 4
MIN_BYTES = 1024
_COMPRESSIBLE = (b"text/html", b"application/json", b"text/plain", b"text/css", b"text/javascript")


def _optional_brotli() -> ModuleType | None:
    try:
        return importlib.import_module("brotli")
    except ImportError:  # the [brotli] extra is not installed: gzip only
        return None


_brotli = _optional_brotli()


def accepted(header: str) -> dict[str, float]:
    """Codings an Accept-Encoding header allows, with their q (q=0 entries removed)."""
    out: dict[str, float] = {}
    for part in header.lower().split(","):
        coding, _, params = part.strip().partition(";")
        coding = coding.strip()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 1.0
        out[coding] = q
    star = out.get("*")
    if star is not None:
        for coding in ("gzip", "br", "zstd"):
            out.setdefault(coding, star)
    return {c: q for c, q in out.items() if q > 0}


def choose(header: str, offered: tuple[str, ...]) -> str | None:
    """The first of `offered` (in our order of preference) the client accepts, else None."""
    ok = accepted(header)
    return next((c for c in offered if c in ok), None)


def compress(body: bytes, coding: str, *, level: int | None = None) -> bytes:
    """body in `coding` (gzip or br)."""
    if coding == "br" and _brotli is not None:
        return bytes(_brotli.compress(body, quality=BROTLI_QUALITY if level is None else level))
    return gzip.compress(body, GZIP_LEVEL if level is None else level, mtime=0)


def response_codings() -> tuple[str, ...]:
    """What this server can compress a response with, best first."""
    return ("br", "gzip") if _brotli is not None else ("gzip",)


class VariantCache:
    """A byte-bounded LRU of compressed variants (key -> bytes), shared by request threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get_or_make(self, key: tuple[str, ...], make: Callable[[], bytes]) -> bytes:
        """The cached variant, or make() it (outside the lock) and keep it if it fits."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        value = make()
        if len(value) > self.max_bytes // 4:
            return value  # one huge variant would evict everything else
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._size += len(value)
                while self._size > self.max_bytes:
                    _old, dropped = self._items.popitem(last=False)
                    self._size -= len(dropped)
        return value


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k.lower() == name), None)


class CompressMiddleware:
    """ASGI: compress whole HTML/JSON/text bodies the client accepts; add Vary: Accept-Encoding."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") == "HEAD":
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"accept-encoding", b"")
        coding = choose(raw.decode("latin-1"), response_codings())
        start: dict[str, Any] | None = None
        passthrough = False

        async def wrapped(message: dict[str, Any]) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                start = message
                headers = list(message.get("headers") or [])
                ctype = _header(headers, b"content-type") or b""
                passthrough = (
                    _header(headers, b"content-encoding") is not None
                    or not ctype.startswith(_COMPRESSIBLE)
                    or message.get("status", 200) in (204, 304)
                )
                if passthrough:
                    await send(message)
                return
            if passthrough or start is None or message["type"] != "http.response.body":
                await send(message)
                return
            headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"vary"]
            vary = _header(list(start.get("headers") or []), b"vary")
            if vary is None:
                vary = b"Accept-Encoding"
            elif b"accept-encoding" not in vary.lower():
                vary += b", Accept-Encoding"
            headers.append((b"vary", vary))
            body = message.get("body", b"")
            if message.get("more_body") or coding is None or len(body) < MIN_BYTES:
                # Streamed bodies pass as they are; the Vary still tells caches we negotiate.
                start["headers"] = headers
                await send(start)
                await send(message)
                start = None
                passthrough = True
                return
            packed = compress(body, coding)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers += [
                (b"content-encoding", coding.encode()),
                (b"content-length", b"%d" % len(packed)),
            ]
            start["headers"] = headers
            await send(start)
            await send({"type": "http.response.body", "body": packed})

        await self.app(scope, receive, wrapped)
