"""Ingest: decode the envelope, compress the events, turn a batch into rows.

The writer then stores a group of batches: see retrospec.ingest.write (segments, then rows).
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import msgspec

from retrospec.errors import (
    BadRequest,
    PayloadTooLarge,
)
from retrospec.ingest.envelope import (
    ENVELOPE_DECODER,
    Envelope,
    Failure,
    FailurePayload,
    encode_payload,
)
from retrospec.ingest.scrub import (
    scrub_tags,
    scrub_text,
    scrub_value,
    strip_event_urls,
    strip_url,
)
from retrospec.ingest.useragent import parse as parse_user_agent
from retrospec.ingest.write import PendingChunk, PreparedBatch, StoredChunk
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore, chunk_key, compress

log = logging.getLogger(__name__)

MESSAGE_SUMMARY_CHARS = 2000
# Compact failure storage: what a stored failure keeps at most (the rest is cut, and the
# payload is compressed once its JSON passes 1 KB; see envelope.encode_payload).
STACK_CHARS = 16_384
CONTEXT_BYTES = 8_192
URL_CHARS = 1_024
MAX_TAGS = 50
MAX_FINGERPRINT_PARTS = 20
MAX_DEBUG_IDS = 100
_ANY = msgspec.json.Decoder()
_EVENTS = msgspec.json.Decoder(list[msgspec.Raw])
_JSON = msgspec.json.Encoder()
# Events up to this size are compressed on the event loop (~40 µs for a typical 10 KB batch):
# handing them to the I/O pool costs more than the work (a thread hop and GIL hand-offs; chunk
# ingest measured ~1,500/s that way against ~2,100/s inline). Bigger batches (full snapshots)
# still go to the pool so the loop never stalls for long.
INLINE_COMPRESS_BYTES = 65_536
GZIP_MAGIC = b"\x1f\x8b"


def gunzip_capped(data: bytes, limit: int) -> bytes:
    """Decompress gzip, stopping as soon as the output would pass limit (gzip bombs)."""
    decomp = zlib.decompressobj(wbits=31)
    out = bytearray()
    buf = data
    try:
        while True:
            room = limit + 1 - len(out)
            chunk = decomp.decompress(buf, room)
            out += chunk
            if len(out) > limit:
                raise PayloadTooLarge(f"body is over {limit} bytes once decompressed")
            if decomp.eof:
                break
            buf = decomp.unconsumed_tail
            if not buf and len(chunk) < room:
                raise BadRequest("gzip body is truncated")
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None
    return bytes(out)


def decode_envelope(body: bytes) -> Envelope:
    """Decode and validate the envelope; events stay raw bytes and are only checked to be a list."""
    try:
        env = ENVELOPE_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid batch: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:
        # msgspec walks nesting recursively, even inside values it keeps raw.
        raise BadRequest("malformed JSON: nested too deeply") from None
    if len(env.events):
        head = bytes(memoryview(env.events)[:64]).lstrip()
        if not head.startswith(b"[") and head != b"null":
            raise BadRequest("invalid batch: `events` must be an array of rrweb events")
    return env


def event_bytes(env: Envelope) -> bytes | None:
    """The raw rrweb events array, or None when the batch carries none."""
    if not len(env.events):
        return None
    raw = bytes(env.events)
    stripped = raw.strip()
    if stripped in (b"null", b"[]") or stripped.replace(b" ", b"") == b"[]":
        return None
    return raw


def compress_events(events: bytes) -> PendingChunk:
    """Compress a batch's events into one zstd frame (~40 µs per 10 KB of events)."""
    return PendingChunk(frame=compress(events), raw_bytes=len(events))


def count_events(events: bytes) -> int:
    """How many rrweb events a raw events array holds (skipped over, never parsed: ~2.5 µs/KB)."""
    try:
        return len(_EVENTS.decode(events))
    except msgspec.ValidationError:
        raise BadRequest("invalid batch: `events` must be an array of rrweb events") from None
    except (msgspec.DecodeError, RecursionError):
        raise BadRequest("malformed JSON in `events`") from None


# Counting events builds one small object per event, so an array of millions of tiny ones
# ("[0,0,0,...]", 10 MB of it gzips to 10 KB) must be refused before it is counted: an array
# with this many commas per allowed event is over the cap, whatever its nesting (a real batch
# has a few commas per event; one huge full snapshot has many, but not this many).
COMMAS_PER_EVENT = 64


def pack_events(events: bytes, max_events: int, keep: frozenset[str]) -> PendingChunk:
    """Count (capped), strip recorded URLs' query strings, compress: a batch's events, stored."""
    if events.count(b",") >= max_events * COMMAS_PER_EVENT:
        raise PayloadTooLarge(f"a batch may carry at most {max_events} events")
    count = count_events(events)
    if count > max_events:
        raise PayloadTooLarge(f"a batch may carry at most {max_events} events, got {count}")
    cleaned = strip_event_urls(events, keep)
    return PendingChunk(frame=compress(cleaned), raw_bytes=len(cleaned), events=count)


def store_events(blobs: BlobStore, site: Site, env: Envelope, events: bytes) -> StoredChunk:
    """Write one chunk as its own blob: the layout before segments (old rows, tests, tools)."""
    key = chunk_key(site.id, env.session.id, env.seq, events)
    stored = blobs.put(key, events)
    return StoredChunk(key=key, raw_bytes=len(events), stored_bytes=stored)


def user_key(env: Envelope) -> str | None:
    """Who counts as one user: identified id, else email, else the SDK's anonymous id."""
    user = env.session.user
    if user is not None and user.id:
        return f"id:{user.id}"
    if user is not None and user.email:
        return f"email:{user.email.lower()}"
    if env.session.anonymous_id:
        return f"anon:{env.session.anonymous_id}"
    return None


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def _url(url: str | None, keep: frozenset[str]) -> str | None:
    return None if url is None else _cut(strip_url(url, keep), URL_CHARS)


def _context(f: Failure, keep: frozenset[str]) -> Any:
    if not len(f.context):
        return None
    try:
        value = scrub_value(_ANY.decode(f.context), keep)
    except (msgspec.DecodeError, RecursionError):
        return "[unreadable context]"
    encoded = _JSON.encode(value)
    if len(encoded) <= CONTEXT_BYTES:
        return value
    # Too big to keep whole: keep its start as text, so a reader still sees what it was.
    return encoded[: CONTEXT_BYTES - 64].decode("utf-8", "ignore") + f"… [{len(encoded)} bytes]"


def _payload(f: Failure, keep: frozenset[str]) -> str | None:
    debug_ids = None
    if f.debug_ids:
        items = list(f.debug_ids.items())[:MAX_DEBUG_IDS]
        debug_ids = {strip_url(url, keep): value for url, value in items}
    payload = FailurePayload(
        stack=_cut(scrub_text(f.stack[:STACK_CHARS], keep), STACK_CHARS) if f.stack else f.stack,
        filename=_url(f.filename, keep),
        lineno=f.lineno,
        colno=f.colno,
        fingerprint=f.fingerprint[:MAX_FINGERPRINT_PARTS] if f.fingerprint else f.fingerprint,
        context=_context(f, keep),
        tags=scrub_tags(dict(list(f.tags.items())[:MAX_TAGS])) if f.tags else f.tags,
        debug_ids=debug_ids,
    )
    return encode_payload(payload)


def failure_text_bytes(env: Envelope) -> int:
    """Roughly how much failure text a batch carries (what scrubbing it costs)."""
    return sum(len(f.message or "") + len(f.stack or "") + len(f.context) for f in env.failures)


# Columns of a failure row that can be long (message, url, request_url, payload); the others
# are short and covered by the fixed overhead.
_LONG_COLUMNS = (5, 6, 10, 18)


def failure_bytes(row: tuple[object, ...]) -> int:
    """What a failure row costs in storage, roughly: its long text and a fixed overhead."""
    return 256 + sum([len(v) for v in (row[i] for i in _LONG_COLUMNS) if isinstance(v, str)])


def prepare(
    site: Site,
    env: Envelope,
    chunk: StoredChunk | PendingChunk | None,
    received_at: int,
    *,
    keep: frozenset[str] = frozenset(),
) -> PreparedBatch:
    """Turn a decoded envelope into rows (parsing and formatting stay outside the transaction).

    Every URL loses its query string (bar `keep`) and secrets are scrubbed (ingest.scrub);
    stacks, contexts and the rest of a failure's payload are cut to the limits above.
    """
    meta = env.session
    page_url = _url(meta.url, keep)
    user = meta.user
    browser, os_name = parse_user_agent(meta.user_agent)
    ukey = user_key(env)
    started = meta.started_at if meta.started_at is not None else received_at
    started = min(started, received_at)
    session_row = (
        meta.id,
        site.id,
        started,
        received_at,
        user.id if user else None,
        user.email if user else None,
        user.name if user else None,
        meta.anonymous_id,
        ukey,
        meta.user_agent,
        browser,
        os_name,
        page_url,
        page_url,
        meta.release,
        meta.environment,
        meta.sdk,
        1 if chunk else 0,
        len(env.failures),
        chunk.raw_bytes if chunk else 0,
        chunk.stored_bytes if chunk else 0,
        "pending" if chunk else "none",
        chunk.events if chunk else 0,
    )
    failure_rows = [
        (
            site.id,
            meta.id,
            env.seq,
            f.kind,
            f.type,
            scrub_text(f.message[: MESSAGE_SUMMARY_CHARS * 2], keep)[:MESSAGE_SUMMARY_CHARS]
            if f.message
            else f.message,
            _url(f.url, keep) or page_url,
            f.ts,
            received_at,
            f.method.upper() if f.method else None,
            _url(f.request_url, keep),
            f.status,
            f.duration_ms,
            meta.release,
            meta.environment,
            browser,
            os_name,
            ukey,
            _payload(f, keep),
        )
        for f in env.failures
    ]
    return PreparedBatch(
        site_id=site.id,
        session_id=meta.id,
        seq=env.seq,
        received_at=received_at,
        session_row=session_row,
        failure_rows=failure_rows,
        chunk=chunk,
        failure_bytes=sum(failure_bytes(row) for row in failure_rows),
    )
