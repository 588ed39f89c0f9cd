"""An issue's rendered clip (/issues/{id}/clip.mp4) and its poster (clip.png), behind login.

The video answers byte ranges (RFC 9110), which browsers use to seek and to read an MP4's
index; the files are immutable under their keys, so the key makes a strong ETag.
"""

from __future__ import annotations

import hashlib
import re
from functools import partial
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from retrospec.errors import NotFound
from retrospec.video.store import Clip, get_clip
from retrospec.web.access import runtime
from retrospec.web.offload import in_pool
from retrospec.web.render import SECURITY_HEADERS

_RANGE = re.compile(r"\Abytes=(\d*)-(\d*)\Z")


async def _ready_clip(request: Request[Any, Any, Any], issue_id: int) -> Clip:
    clip = await runtime(request).reads.run(get_clip, issue_id)
    if clip is None or not clip.ready:
        raise NotFound("this issue has no clip")
    return clip


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single satisfiable byte range; None means the whole file."""
    m = _RANGE.match((header or "").strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # bytes=-N: the last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n else (size, size)
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    return start, end


def _read(rt: Any, key: str, start: int, length: int) -> bytes:
    try:
        return bytes(rt.blobs.get_range(key, start, length))
    except FileNotFoundError:  # purged between the row read and now
        raise NotFound("this clip is no longer stored") from None


def _headers(key: str) -> dict[str, str]:
    return {
        **SECURITY_HEADERS,
        "cache-control": "private, max-age=3600",
        "etag": '"' + hashlib.sha256(key.encode()).hexdigest()[:24] + '"',
        "accept-ranges": "bytes",
        "vary": "Cookie",
    }


@get("/issues/{issue_id:int}/clip.mp4")
async def clip_video(request: Request[Any, Any, Any], issue_id: FromPath[int]) -> Response[bytes]:
    """The clip as MP4, whole or one byte range."""
    rt = runtime(request)
    clip = await _ready_clip(request, issue_id)
    key, size = str(clip.video_key), clip.video_bytes
    headers = _headers(key)
    if request.headers.get("if-none-match") == headers["etag"]:
        return Response(b"", status_code=304, headers=headers)
    wanted = _range(request.headers.get("range"), size)
    if wanted is None:
        body = await in_pool(rt, partial(_read, rt, key, 0, size))
        return Response(body, media_type="video/mp4", headers=headers)
    start, end = wanted
    if start >= size or end < start:
        headers["content-range"] = f"bytes */{size}"
        return Response(b"", status_code=416, headers=headers)
    body = await in_pool(rt, partial(_read, rt, key, start, end - start + 1))
    headers["content-range"] = f"bytes {start}-{end}/{size}"
    return Response(body, status_code=206, media_type="video/mp4", headers=headers)


@get("/issues/{issue_id:int}/clip.png")
async def clip_poster(request: Request[Any, Any, Any], issue_id: FromPath[int]) -> Response[bytes]:
    """The clip's poster: the frame at the failure."""
    rt = runtime(request)
    clip = await _ready_clip(request, issue_id)
    if clip.poster_key is None:
        raise NotFound("this clip has no poster")
    body = await in_pool(rt, partial(_read, rt, clip.poster_key, 0, clip.poster_bytes))
    return Response(body, media_type="image/png", headers=_headers(clip.poster_key))


HANDLERS = [clip_video, clip_poster]
