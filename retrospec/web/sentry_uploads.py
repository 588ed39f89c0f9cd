"""/api/0/...: the slice of Sentry's web API that `sentry-cli sourcemaps upload` and the Sentry
bundler plugins call, so an existing CI pipeline uploads maps here unchanged.

    GET  /api/0/organizations/{org}/chunk-upload/              chunk options
    POST /api/0/organizations/{org}/chunk-upload/              chunks (multipart, gzip parts)
    POST /api/0/organizations/{org}/artifactbundle/assemble/   join, check, store
    POST /api/0/projects/{org}/{project}/releases/             release bookkeeping the plugins
    PUT  /api/0/projects/{org}/{project}/releases/{version}/   do before uploading: answered,
    GET  /api/0/organizations/{org}/releases/{v}/previous-with-commits/   nothing stored (our
    GET  /api/0/organizations/{org}/repos/                     releases come from sessions)

Every call needs the site's upload token as `Authorization: Bearer` (sentry-cli's
`--auth-token`/SENTRY_AUTH_TOKEN); the token names the site, so the organization and project
slugs in paths and bodies are accepted as given. Errors are JSON `{"detail": ...}` as Sentry's.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import logging
import re
from typing import Any

import msgspec

from retrospec.errors import BadRequest, RetrospecError
from retrospec.runtime import Runtime
from retrospec.sourcemaps.chunked import (
    MAX_REQUEST_BYTES,
    assemble,
    chunk_options,
    parse_assemble,
    store_chunks,
)
from retrospec.web.rawasgi import ClientGone, read_body, send_json
from retrospec.web.sourcemaps_api import upload_site

log = logging.getLogger(__name__)

PREFIX = "/api/0"
_SLUG = r"[A-Za-z0-9._~-]{1,100}"
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(rf"\A/organizations/({_SLUG})/chunk-upload/?\Z"), "options"),
    ("POST", re.compile(rf"\A/organizations/({_SLUG})/chunk-upload/?\Z"), "chunks"),
    ("POST", re.compile(rf"\A/organizations/({_SLUG})/artifactbundle/assemble/?\Z"), "assemble"),
    ("POST", re.compile(rf"\A/projects/({_SLUG})/({_SLUG})/releases/?\Z"), "release"),
    (
        "PUT",
        re.compile(rf"\A/projects/({_SLUG})/({_SLUG})/releases/([^/]{{1,200}})/?\Z"),
        "release",
    ),
    (
        "GET",
        re.compile(rf"\A/organizations/({_SLUG})/releases/[^/]{{1,200}}/previous-with-commits/?\Z"),
        "empty",
    ),
    ("GET", re.compile(rf"\A/organizations/({_SLUG})/repos/?\Z"), "list"),
)
_MAX_JSON_BYTES = 1 << 20


def chunk_parts(body: bytes, content_type: str) -> list[tuple[str, bytes, bool]]:
    """(sha1 file name, body, gzipped) of each `file_gzip` / `file` part of a chunk upload."""
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise BadRequest("chunks come as multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BadRequest("malformed multipart body")
    out: list[tuple[str, bytes, bool]] = []
    for part in message.iter_parts():
        field = part.get_param("name", header="content-disposition")
        if field not in ("file_gzip", "file"):
            continue
        raw = part.get_payload(decode=True)
        out.append(
            (
                str(part.get_filename() or ""),
                raw if isinstance(raw, bytes) else b"",
                field == "file_gzip",
            )
        )
    if not out:
        raise BadRequest("no file or file_gzip parts in the chunk upload")
    return out


class SentryUploads:
    """The ASGI app mounted at /api/0."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.max_upload = rt.settings.sourcemap_max_upload_mb << 20

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            status, body = await self._route(scope, receive)
        except ClientGone:
            return
        except RetrospecError as exc:
            status, body = exc.http_status, {"detail": exc.message}
        except Exception:
            log.exception("sentry-cli upload call failed")
            status, body = 500, {"detail": "internal error; nothing was stored"}
        await send_json(send, status, body)

    async def _route(self, scope: dict[str, Any], receive: Any) -> tuple[int, Any]:
        path = scope["path"][len(PREFIX) :] if scope["path"].startswith(PREFIX) else scope["path"]
        method = scope["method"]
        action = None
        match = None
        allowed = False
        for verb, pattern, name in _ROUTES:
            m = pattern.match(path)
            if m is None:
                continue
            allowed = True
            if verb == method:
                action, match = name, m
                break
        if action is None or match is None:
            if allowed:
                return 405, {"detail": f"{method} is not allowed here"}
            return 404, {"detail": "not found (RetroSpec implements Sentry's upload API only)"}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        site = await upload_site(self.rt.reads, headers)
        loop = asyncio.get_running_loop()
        if action == "options":
            return 200, chunk_options(match.group(1), self.max_upload)
        if action == "chunks":
            body = await read_body(receive, MAX_REQUEST_BYTES, "the request")
            parts = chunk_parts(body, headers.get("content-type", ""))
            await loop.run_in_executor(self.rt.io_pool, store_chunks, self.rt.blobs, site.id, parts)
            return 200, {}
        if action == "assemble":
            req = parse_assemble(await read_body(receive, _MAX_JSON_BYTES), self.max_upload)
            done = await loop.run_in_executor(
                self.rt.io_pool,
                assemble,
                self.rt.writer.call,
                self.rt.blobs,
                site.id,
                req,
                self.max_upload,
            )
            if done.result is not None:
                log.info(
                    "sentry-cli upload for site %s: %d files in release %s",
                    site.name,
                    len(done.result.files),
                    done.result.release,
                )
            return 200, done.json()
        if action == "release":
            doc = await read_body(receive, _MAX_JSON_BYTES)
            try:
                sent = msgspec.json.decode(doc) if doc else {}
            except msgspec.DecodeError:
                raise BadRequest("the body is not JSON") from None
            version = sent.get("version") if isinstance(sent, dict) else None
            if len(match.groups()) == 3:
                version = match.group(3)
            return (201 if method == "POST" else 200), {"version": version, "projects": []}
        if action == "list":
            return 200, []
        return 200, {}
