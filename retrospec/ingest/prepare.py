"""Ingest: decode the envelope, compress the events, turn a batch into rows.

The writer then stores a group of batches: see retrospec.ingest.write (segments, then rows).
"""

from __future__ import annotations

import logging
import zlib

import msgspec

from retrospec.errors import (
    BadRequest,
    PayloadTooLarge,
)
from retrospec.ingest.envelope import (
    ENVELOPE_DECODER,
    PAYLOAD_ENCODER,
    Envelope,
    Failure,
    FailurePayload,
)
from retrospec.ingest.useragent import parse as parse_user_agent
from retrospec.ingest.write import PendingChunk, PreparedBatch, StoredChunk
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore, chunk_key, compress

log = logging.getLogger(__name__)

MESSAGE_SUMMARY_CHARS = 2000
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


def _payload(f: Failure) -> str | None:
    payload = FailurePayload(
        stack=f.stack,
        filename=f.filename,
        lineno=f.lineno,
        colno=f.colno,
        fingerprint=f.fingerprint,
        context=f.context if len(f.context) else None,
        tags=f.tags,
        debug_ids=f.debug_ids,
    )
    encoded = PAYLOAD_ENCODER.encode(payload)
    return None if encoded == b"{}" else encoded.decode("utf-8")


def prepare(
    site: Site, env: Envelope, chunk: StoredChunk | PendingChunk | None, received_at: int
) -> PreparedBatch:
    """Turn a decoded envelope into rows (parsing and formatting stay outside the transaction)."""
    meta = env.session
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
        meta.url,
        meta.url,
        meta.release,
        meta.environment,
        meta.sdk,
        1 if chunk else 0,
        len(env.failures),
        chunk.raw_bytes if chunk else 0,
        chunk.stored_bytes if chunk else 0,
        "pending" if chunk else "none",
    )
    failure_rows = [
        (
            site.id,
            meta.id,
            env.seq,
            f.kind,
            f.type,
            f.message[:MESSAGE_SUMMARY_CHARS] if f.message else f.message,
            f.url or meta.url,
            f.ts,
            received_at,
            f.method.upper() if f.method else None,
            f.request_url,
            f.status,
            f.duration_ms,
            meta.release,
            meta.environment,
            browser,
            os_name,
            ukey,
            _payload(f),
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
    )
