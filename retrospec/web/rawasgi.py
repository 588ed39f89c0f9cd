"""What the raw ASGI handlers (ingest, the Sentry front door, source map uploads) share: reading
a capped body and answering JSON. They skip Litestar's request objects on purpose (hot paths,
streamed caps), so these few lines live here once instead of in each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from retrospec.errors import PayloadTooLarge

_JSON = msgspec.json.Encoder()


class ClientGone(Exception):
    """The client disconnected before its body arrived; there is no one to answer."""


async def read_body(receive: Any, limit: int, what: str = "body") -> bytes:
    """The whole request body, refused (413) as soon as it passes `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is over the {limit}-byte limit")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_json(
    send: Any, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON response that is never cached; a 401 names the Bearer scheme."""
    payload = _JSON.encode(body)
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    if status == 401:
        head.append((b"www-authenticate", b'Bearer realm="retrospec"'))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})
