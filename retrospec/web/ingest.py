"""POST /api/v1/ingest as a raw ASGI handler: streamed size caps and CORS around ingest.pipeline."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_plus

import msgspec

from retrospec.clock import now_ms
from retrospec.errors import (
    PayloadTooLarge,
    RetrospecError,
    UnsupportedMediaType,
)
from retrospec.ingest import prepare
from retrospec.ingest.pipeline import Pipeline
from retrospec.web.rawasgi import ClientGone, read_body

log = logging.getLogger(__name__)

# sendBeacon can only send CORS-safelisted types without a preflight, hence text/plain.
_ACCEPTED_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}
_ALLOWED_HEADERS = "content-type, content-encoding, x-retrospec-key"
_JSON = msgspec.json.Encoder()


def _query_key(query: bytes) -> str:
    # Only `key` matters here; parse_qs on every request showed up in profiles.
    if not query:
        return ""
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"key":
            return unquote_plus(value.decode("latin-1"))
    return ""


_WANTED = {
    b"origin",
    b"content-type",
    b"content-encoding",
    b"content-length",
    b"x-retrospec-key",
}


def _headers(scope: dict[str, Any], wanted: frozenset[bytes]) -> dict[str, str]:
    # ASGI servers send lower-case names; decode only the few headers ingest reads.
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        lower = name.lower()
        if lower in wanted:
            found[lower.decode("latin-1")] = value.decode("latin-1")
    return found


def client_address(scope: dict[str, Any], headers: dict[str, str], header: str) -> str | None:
    """Where the request came from: the peer, or the last hop a trusted proxy header names."""
    if header:
        forwarded = headers.get(header, "")
        # The proxy appends the address it saw; anything before it the client could forge.
        last = forwarded.rsplit(",", 1)[-1].strip()[:64]
        if last:
            return last
    client = scope.get("client")
    return str(client[0]) if client else None


async def _send_json(
    send: Any,
    status: int,
    body: dict[str, Any],
    *,
    origin: str | None,
    extra: dict[str, str] | None = None,
) -> None:
    payload = _JSON.encode(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        (b"vary", b"Origin"),
    ]
    if origin:
        headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        headers.append((b"access-control-expose-headers", b"Retry-After"))
    if extra:
        for name, value in extra.items():
            headers.append((name.lower().encode(), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class IngestHandler:
    """The ingest endpoint's HTTP shell (headers, body, CORS) around the shared pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.address_header = pipeline.settings.client_address_header.strip().lower()
        self.wanted = frozenset(
            _WANTED | ({self.address_header.encode("latin-1")} if self.address_header else set())
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = _headers(scope, self.wanted)
        origin = headers.get("origin")
        try:
            method = scope["method"]
            key = _query_key(scope.get("query_string", b"")) or headers.get("x-retrospec-key", "")
            if method == "OPTIONS":
                await self._preflight(send, key, origin)
                return
            if method != "POST":
                await _send_json(
                    send,
                    405,
                    {"error": "use POST"},
                    origin=origin,
                    extra={"allow": "POST, OPTIONS"},
                )
                return
            status, body, extra = await self._ingest(scope, receive, headers, key, origin)
        except ClientGone:
            return
        except RetrospecError as exc:
            # Every answer, a 403 included, is readable by the page: the SDK must see that a
            # refusal is final (and stop retrying); nothing stored or secret is in the body.
            status, body, extra = exc.http_status, {"error": exc.message}, exc.headers
        except Exception:
            log.exception("ingest failed")
            status, body, extra = 500, {"error": "internal error; the batch was not stored"}, {}
        await _send_json(send, status, body, origin=origin, extra=extra)

    async def _preflight(self, send: Any, key: str, origin: str | None) -> None:
        if key:
            site = await self.pipeline.lookup(key)
            if site is not None and not site.allows_origin(origin):
                await _send_json(send, 403, {"error": "origin not allowed"}, origin=None)
                return
        headers = [
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", _ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        if origin:
            headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _ingest(
        self,
        scope: dict[str, Any],
        receive: Any,
        headers: dict[str, str],
        key: str,
        origin: str | None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        settings = self.pipeline.settings
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype not in _ACCEPTED_TYPES:
            raise UnsupportedMediaType(
                f"content type {ctype!r} is not supported; send application/json or text/plain"
            )
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity", "gzip"):
            raise UnsupportedMediaType(f"content encoding {encoding!r} is not supported; use gzip")
        address = client_address(scope, headers, self.address_header)
        site = await self.pipeline.admit(key, origin, client_address=address)
        declared = headers.get("content-length", "")
        # A length of more digits than any cap has is over it (int() of thousands of digits
        # would raise).
        if declared.isdigit() and (len(declared) > 15 or int(declared) > settings.max_body_bytes):
            raise PayloadTooLarge(f"body is over the {settings.max_body_bytes}-byte limit")
        body = await read_body(receive, settings.max_body_bytes)
        if encoding == "gzip" or body[:2] == prepare.GZIP_MAGIC:
            body = prepare.gunzip_capped(body, settings.max_decompressed_bytes)
        elif len(body) > settings.max_decompressed_bytes:
            raise PayloadTooLarge(
                f"body is over the {settings.max_decompressed_bytes}-byte decoded limit"
            )
        env = prepare.decode_envelope(body)
        stored = await self.pipeline.accept(site, env, now_ms(), body_bytes=len(body))
        return 202, {"ok": True, "seq": env.seq, "duplicate": not stored}, {}
