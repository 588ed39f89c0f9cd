"""POST /api/<project_id>/envelope/ and /api/<project_id>/store/: the Sentry SDK's front door.

A raw ASGI handler like web/ingest.py: it reads the key (the `sentry_key` query parameter, the
X-Sentry-Auth header, or the envelope header's `dsn`), admits the request through the shared
pipeline (key, origin, rate limit), streams the body through a capped Content-Encoding decoder
into the envelope reader, lets the pure adapter (ingest.sentry) turn it into ingest batches and
hands each to `Pipeline.accept`, answering only after they are committed.

Answers in Sentry's dialect, which the SDK reads: 200 `{"id": ...}`; 403 for an unknown key or a
key of another project (as Sentry does); 429 with `Retry-After` and `X-Sentry-Rate-Limits`, both
exposed to the page through CORS (unexposed, the SDK would treat a 429 as "everything, 60 s").
A refused replay segment makes the SDK stop that replay for good, so replay envelopes are only
refused when they cannot be stored.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import msgspec

from retrospec.clock import now_ms
from retrospec.errors import (
    Forbidden,
    InsufficientStorage,
    InvalidKey,
    PayloadTooLarge,
    RateLimited,
    RetrospecError,
)
from retrospec.ingest.pipeline import Pipeline
from retrospec.ingest.sentry import stats
from retrospec.ingest.sentry.adapter import (
    KEPT_TYPES,
    Plan,
    error_envelope,
    error_session,
    plan_envelope,
    plan_store,
    replay_session_id,
)
from retrospec.ingest.sentry.envelope import BodyDecoder, EnvelopeReader, body_decoder
from retrospec.ingest.sentry.replays import Recording, read_recording, replay_envelope
from retrospec.sites import Site
from retrospec.storage.db import ReadPool, Writer
from retrospec.web.rawasgi import ClientGone

log = logging.getLogger(__name__)

PATH_RE = re.compile(r"\A/api/(\d{1,18})/(envelope|store)/?\Z")
_ALLOWED_HEADERS = (
    b"content-type, content-encoding, x-sentry-auth, authorization, sentry-trace, baggage"
)
_EXPOSED = b"x-sentry-rate-limits, retry-after"
_AUTH_KEY = re.compile(r"sentry_key\s*=\s*([^,\s]+)")
# Recordings above this many bytes are decompressed and normalised off the event loop.
INLINE_RECORDING_BYTES = 16_384
_JSON = msgspec.json.Encoder()
_WANTED = {
    b"origin",
    b"content-encoding",
    b"content-length",
    b"x-sentry-auth",
    b"authorization",
    b"user-agent",
}


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        lower = name.lower()
        if lower in _WANTED:
            found[lower.decode("latin-1")] = value.decode("latin-1")
    return found


def query_key(query: bytes) -> str:
    """`sentry_key` from the query string (how the browser SDK sends it)."""
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"sentry_key":
            return unquote_plus(value.decode("latin-1")).strip()
    return ""


def header_key(headers: dict[str, str]) -> str:
    """`sentry_key` from X-Sentry-Auth (or `Authorization: Sentry ...`), as other SDKs send it."""
    for name in ("x-sentry-auth", "authorization"):
        value = headers.get(name, "")
        if name == "authorization" and not value.lower().startswith("sentry "):
            continue
        match = _AUTH_KEY.search(value)
        if match:
            return match.group(1)
    return ""


def dsn_key(header: dict[str, Any]) -> str:
    """The public key in an envelope header's `dsn` (clients behind a tunnel send it)."""
    value = header.get("dsn")
    if not isinstance(value, str):
        return ""
    try:
        return urlsplit(value).username or ""
    except ValueError:
        return ""


def rate_limit_headers(exc: RateLimited) -> dict[str, str]:
    """Retry-After plus Sentry's X-Sentry-Rate-Limits (all categories, for that long)."""
    retry = exc.headers.get("retry-after", "60")
    seconds = retry if retry.isdigit() else "60"
    return {
        **exc.headers,
        "retry-after": seconds,
        "x-sentry-rate-limits": f"{seconds}::project:rate_limited",
    }


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole response: status, headers (lower-case names), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""

    async def send(self, send: Any) -> None:
        """Send it over ASGI."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def _json_answer(
    status: int,
    body: dict[str, Any],
    *,
    origin: str | None,
    extra: dict[str, str] | None = None,
) -> Answer:
    payload = _JSON.encode(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        (b"vary", b"Origin"),
    ]
    if origin:
        headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        headers.append((b"access-control-expose-headers", _EXPOSED))
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode(), value.encode("latin-1")))
    return Answer(status, headers, payload)


class SentryHandler:
    """The Sentry endpoints' HTTP shell (auth, body, CORS, Sentry's answers) around the pipeline."""

    def __init__(
        self, pipeline: Pipeline, *, writer: Writer, reads: ReadPool, io_pool: Any
    ) -> None:
        self.pipeline = pipeline
        self.writer = writer
        self.reads = reads
        self.io_pool = io_pool

    @staticmethod
    def matches(path: str) -> bool:
        """Whether a request path is one of the Sentry endpoints."""
        return PATH_RE.match(path) is not None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        answer = await self.respond(scope, receive)
        if answer is not None:
            await answer.send(send)

    async def respond(self, scope: dict[str, Any], receive: Any) -> Answer | None:
        """The answer to one request (None when the client went away mid-body)."""
        headers = _headers(scope)
        origin = headers.get("origin")
        match = PATH_RE.match(scope["path"])
        key = query_key(scope.get("query_string", b"")) or header_key(headers)
        extra: dict[str, str] = {}
        try:
            if match is None:
                status, body = 404, {"error": "not found"}
            elif scope["method"] == "OPTIONS":
                return await self._preflight(key, origin)
            elif scope["method"] != "POST":
                status, body = 405, {"error": "use POST"}
                extra = {"allow": "POST, OPTIONS"}
            else:
                project = int(match.group(1))
                body = await self._handle(scope, receive, headers, key, origin, project, match[2])
                status = 200
        except ClientGone:
            return None
        except RetrospecError as exc:
            status, extra = exc.http_status, dict(exc.headers)
            if isinstance(exc, InvalidKey) and key:
                status = 403  # Sentry's answer to an unknown key; the SDK drops the data either way
            if isinstance(exc, RateLimited):
                extra = rate_limit_headers(exc)
            body = {"error": exc.message, "detail": exc.message}
        except Exception:
            log.exception("sentry envelope failed")
            status, extra = 500, {}
            body = {"error": "internal error; the envelope was not stored"}
        return _json_answer(status, body, origin=origin, extra=extra)

    async def _preflight(self, key: str, origin: str | None) -> Answer:
        if key:
            site = await self.pipeline.lookup(key)
            if site is not None and not site.allows_origin(origin):
                return _json_answer(403, {"error": "origin not allowed"}, origin=None)
        headers = [
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", _ALLOWED_HEADERS),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        if origin:
            headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        return Answer(204, headers)

    async def _admit(self, key: str, origin: str | None, project: int) -> Site:
        if not key:
            raise InvalidKey("missing sentry_key: use the site's DSN from `retrospec sites list`")
        site = await self.pipeline.admit(key, origin)
        if site.project_id != project:
            raise Forbidden(f"this DSN key belongs to project {site.project_id}, not {project}")
        return site

    async def _handle(
        self,
        scope: dict[str, Any],
        receive: Any,
        headers: dict[str, str],
        key: str,
        origin: str | None,
        project: int,
        endpoint: str,
    ) -> dict[str, Any]:
        settings = self.pipeline.settings
        decoder = body_decoder(headers.get("content-encoding", ""), settings.max_decompressed_bytes)
        site = await self._admit(key, origin, project) if key else None
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise PayloadTooLarge(f"body is over the {settings.max_body_bytes}-byte limit")
        user_agent = headers.get("user-agent")
        if endpoint == "store":
            body = b"".join(await self._read(receive, decoder, None))
            if site is None:
                site = await self._admit("", origin, project)
            received_at = now_ms()
            plan = plan_store(body, user_agent=user_agent, received_at=received_at)
        else:
            reader = EnvelopeReader(KEPT_TYPES, max_item=settings.max_decompressed_bytes)
            await self._read(receive, decoder, reader)
            parsed = reader.close()
            if site is None:
                site = await self._admit(dsn_key(parsed.header), origin, project)
            received_at = now_ms()
            plan = plan_envelope(parsed, user_agent=user_agent, received_at=received_at)
        await self._store(site, plan, received_at)
        found = plan.response_id
        return {"id": found} if found else {}

    async def _read(
        self, receive: Any, decoder: BodyDecoder, reader: EnvelopeReader | None
    ) -> list[bytes]:
        """Stream the body: compressed-size cap, decoder (decoded cap), then the reader."""
        limit = self.pipeline.settings.max_body_bytes
        size = 0
        kept: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is over the {limit}-byte limit")
            more = bool(message.get("more_body", False))
            parts = [decoder.decode(chunk)] if chunk else []
            if not more:
                parts.append(decoder.finish())
            for part in parts:
                if reader is not None:
                    reader.feed(part)
                elif part:
                    kept.append(part)
            if not more:
                return kept

    async def _recording(self, plan: Plan) -> Recording:
        payload = plan.recording
        assert payload is not None
        limit = self.pipeline.settings.max_decompressed_bytes
        if len(payload) <= INLINE_RECORDING_BYTES:
            return read_recording(payload, limit)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io_pool, read_recording, payload, limit)

    async def _store(self, site: Site, plan: Plan, received_at: int) -> None:
        """Hand each batch to the pipeline, then record the counts and links."""
        accept = self.pipeline.accept
        links: dict[str, str] = {}
        if plan.replay is not None:
            session_id = replay_session_id(plan.replay.replay_id)
            recording = await self._recording(plan)
            env = replay_envelope(plan.replay, recording, session_id)
            await accept(site, env, received_at, body_bytes=len(recording.events))
            links = {event_id: session_id for event_id in plan.replay.error_ids}
        for error in plan.errors:
            linked = links.get(error.event_id)
            if linked is None and error.replay_id is None:
                linked = await self.reads.run(stats.linked_session, site.id, error.event_id)
            session_id, in_replay = error_session(error, linked)
            # An error with a replay has its steps in the replay; the others carry breadcrumbs.
            env = error_envelope(error, session_id, steps=not in_replay)
            try:
                await accept(site, env, received_at, body_bytes=error.size)
            except InsufficientStorage:
                if not len(env.events):
                    raise
                # Low disk refuses event data, never failures: keep the error without its steps.
                env = error_envelope(error, session_id, steps=False)
                await accept(site, env, received_at, body_bytes=error.size)
        if plan.counts or links:
            tally = stats.Tally(site.id, received_at, plan.counts, tuple(links.items()))
            await self.writer.run_batched(stats.write_tallies, tally)
