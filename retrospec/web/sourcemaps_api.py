"""POST /api/v1/sourcemaps: CI uploads of bundles and maps, authorised by the site's upload token.

    tar czf - -C dist . | curl -H "Authorization: Bearer $RETROSPEC_UPLOAD_TOKEN" \\
         -H "Content-Type: application/gzip" --data-binary @- \\
         "https://retrospec.example.com/api/v1/sourcemaps?release=1.4.2&url_prefix=~/assets"
    curl -H "Authorization: Bearer ..." -F release=1.4.2 -F url_prefix=~/assets \\
         -F files=@dist/main-X.js -F files=@dist/main-X.js.map .../api/v1/sourcemaps

The body is a multipart form (file parts named by their relative path; `release`, `dist`,
`url_prefix` as fields or query parameters) or one zip/tar(.gz) archive. It is read with a cap
(sourcemap_max_upload_mb), then parsed, validated and stored off the event loop; any bad file
answers a 4xx naming it, with nothing stored. 201 answers the stored files (the JSON of
`retrospec sourcemaps upload --json`).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import logging
from typing import Any
from urllib.parse import parse_qs

from retrospec.errors import (
    BadRequest,
    InvalidKey,
    PayloadTooLarge,
    RetrospecError,
    UnsupportedMediaType,
)
from retrospec.runtime import Runtime
from retrospec.sites import Site, site_for_key, site_for_upload_token
from retrospec.sourcemaps.store import (
    StoreResult,
    check_release,
    prepare,
    result_json,
    store_artifacts,
)
from retrospec.sourcemaps.upload import (
    Budget,
    Collected,
    archive_members,
    is_archive_name,
    pair,
    safe_relative,
)
from retrospec.storage.db import ReadPool
from retrospec.web.rawasgi import ClientGone, read_body, send_json

log = logging.getLogger(__name__)

UPLOAD_PATH = "/api/v1/sourcemaps"
_ARCHIVE_TYPES = {
    "application/zip",
    "application/x-zip-compressed",
    "application/x-tar",
    "application/gzip",
    "application/x-gzip",
    "application/x-gtar",
    "application/octet-stream",
}


def _multipart(
    body: bytes, content_type: str, budget: Budget
) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """File parts as (relative path, bytes), and the plain fields."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BadRequest("malformed multipart body")
    files: list[tuple[str, bytes]] = []
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        filename = part.get_filename()
        name = part.get_param("name", header="content-disposition")
        if filename:
            if is_archive_name(filename):
                files.extend(archive_members(data, filename, budget))
                continue
            rel = safe_relative(filename, "upload")
            budget.take(len(data), rel)
            files.append((rel, data))
        elif isinstance(name, str):
            fields[name] = data.decode("utf-8", "replace").strip()
    return files, fields


async def upload_site(reads: ReadPool, headers: dict[str, str]) -> Site:
    """The site whose upload token is the request's bearer token (InvalidKey otherwise)."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidKey(
            "send the site's upload token as `Authorization: Bearer <token>` "
            "(`retrospec sites upload-token SITE` creates one)"
        )
    site = await reads.run(site_for_upload_token, token)
    if site is not None:
        return site
    if await reads.run(site_for_key, token) is not None:
        raise InvalidKey(
            "that is the site's public ingest key; uploads need its upload token "
            "(`retrospec sites upload-token SITE`)"
        )
    raise InvalidKey("unknown or revoked upload token")


class SourcemapUpload:
    """The endpoint's HTTP shell: auth, caps and body formats around sourcemaps.store."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            if scope["method"] != "POST":
                await send_json(send, 405, {"error": "use POST"})
                return
            status, body = await self._upload(scope, receive)
        except ClientGone:
            return
        except RetrospecError as exc:
            status, body = exc.http_status, {"error": exc.message}
        except Exception:
            log.exception("source map upload failed")
            status, body = 500, {"error": "internal error; nothing was stored"}
        await send_json(send, status, body)

    async def _upload(self, scope: dict[str, Any], receive: Any) -> tuple[int, dict[str, Any]]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        site = await upload_site(self.rt.reads, headers)
        limit = self.rt.settings.sourcemap_max_upload_mb << 20
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the upload is over the {limit}-byte limit")
        ctype = headers.get("content-type", "")
        kind = ctype.split(";", 1)[0].strip().lower()
        if kind != "multipart/form-data" and kind not in _ARCHIVE_TYPES:
            raise UnsupportedMediaType(
                f"content type {kind or 'none'!r}: send multipart/form-data or a zip/tar archive"
            )
        body = await read_body(receive, limit, "the upload")
        query = {
            k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()
        }
        loop = asyncio.get_running_loop()
        result, collected = await loop.run_in_executor(
            self.rt.io_pool, self._store, site, body, ctype, kind, query, limit
        )
        doc = result_json(result, site.name)
        doc["warnings"] = collected.warnings + doc["warnings"]
        return 201, doc

    def _store(
        self,
        site: Site,
        body: bytes,
        ctype: str,
        kind: str,
        query: dict[str, str],
        limit: int,
    ) -> tuple[StoreResult, Collected]:
        budget = Budget(limit)
        if kind == "multipart/form-data":
            members, fields = _multipart(body, ctype, budget)
        else:
            members, fields = list(archive_members(body, "upload", budget)), {}
        values = {**fields, **query}
        release, dist = check_release(values.get("release"), values.get("dist"))
        collected = pair(iter(members), values.get("url_prefix") or "~/")
        prepared = prepare(collected.files)
        result = store_artifacts(
            self.rt.writer.call,
            self.rt.blobs,
            site.id,
            release,
            dist,
            collected.files,
            prepared=prepared,
        )
        return result, collected
