"""A Sentry Session Replay segment (`replay_event` + `replay_recording`) as one ingest batch.

The recording is a line `{"segment_id":N}`, a newline, then the rrweb events as a JSON array,
zlib-compressed unless the SDK's compression worker could not start. It is decompressed under the
body's decoded-size cap (a zlib bomb is refused with 413) and normalised so any rrweb player plays
it: timestamps in seconds (Sentry's `performanceSpan` events) become milliseconds, the events are
sorted by time (the SDK appends spans at flush time), Sentry's `options` and span events are
dropped except history navigations, which become `navigation` custom events (replay markers).
Everything else stays byte for byte as recorded.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import msgspec

from retrospec.errors import BadRequest, PayloadTooLarge
from retrospec.ingest.envelope import Envelope, SessionMeta
from retrospec.ingest.sentry.events import (
    SHORT,
    TEXT,
    millis,
    norm_id,
    sdk_label,
    text,
    user_agent_of,
    user_of,
)

# Segment ids map to chunk sequence numbers below this; error events use the numbers above it.
MAX_SEGMENT_ID = 999_999
_SECONDS_BELOW = 1e11  # an epoch timestamp under this is in seconds (ms would be 1973)
MAX_ERROR_IDS = 100
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()


class _Head(msgspec.Struct):
    type: int
    timestamp: float
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _Custom(msgspec.Struct):
    tag: str | None = None
    payload: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


_EVENTS = msgspec.json.Decoder(list[msgspec.Raw])
_HEAD = msgspec.json.Decoder(_Head)
_CUSTOM = msgspec.json.Decoder(_Custom)


@dataclass(frozen=True, slots=True)
class Recording:
    """A normalised segment: rrweb events (a JSON array, in time order) and what was done."""

    segment_id: int
    events: bytes
    count: int
    dropped: int  # Sentry-only and malformed events left out


def _inflate(data: bytes, limit: int) -> bytes:
    # zlib (what the SDK writes) or gzip, detected from the header; capped as it inflates.
    obj = zlib.decompressobj(wbits=47)
    out: list[bytes] = []
    size = 0
    try:
        while data:
            chunk = obj.decompress(data, limit + 1 - size)
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"replay recording is over {limit} bytes once decompressed")
            out.append(chunk)
            if obj.eof:
                break
            data = obj.unconsumed_tail
    except zlib.error as exc:
        raise BadRequest(f"replay recording is not valid zlib: {exc}") from None
    if not obj.eof:
        raise BadRequest("replay recording is truncated")
    return b"".join(out)


def _navigation(ts: int, payload: msgspec.Raw) -> bytes | None:
    """A history navigation span as the `navigation` custom event replay markers read."""
    if not len(payload):
        return None
    try:
        span = _DECODE.decode(payload)
    except msgspec.DecodeError:
        return None
    if not isinstance(span, dict) or span.get("op") != "navigation.push":
        return None
    to = text(span.get("description"), TEXT)
    if not to:
        return None
    return _ENCODE.encode(
        {"type": 5, "timestamp": ts, "data": {"tag": "navigation", "payload": {"to": to}}}
    )


def _restamp(raw: msgspec.Raw, ts: int) -> bytes:
    event: Any = _DECODE.decode(raw)
    event["timestamp"] = ts
    return _ENCODE.encode(event)


def normalise(events_json: bytes) -> tuple[bytes, int, int]:
    """(events as a sorted JSON array, events kept, events dropped) for a raw rrweb array."""
    try:
        raws = _EVENTS.decode(events_json)
    except msgspec.ValidationError:
        raise BadRequest("replay recording is not an array of rrweb events") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"replay recording is not valid JSON: {exc}") from None
    kept: list[tuple[int, Any]] = []
    dropped = 0
    for raw in raws:
        try:
            head = _HEAD.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            dropped += 1  # null, or no type/timestamp: no player can use it
            continue
        seconds = head.timestamp < _SECONDS_BELOW
        ts = round(head.timestamp * 1000) if seconds else int(head.timestamp)
        out: Any = raw
        if head.type == 5:
            try:
                custom = _CUSTOM.decode(head.data) if len(head.data) else _Custom()
            except (msgspec.ValidationError, msgspec.DecodeError):
                custom = _Custom()
            if custom.tag == "options":
                dropped += 1
                continue
            if custom.tag == "performanceSpan":
                nav = _navigation(ts, custom.payload)
                if nav is None:
                    dropped += 1
                    continue
                out = nav
                seconds = False
        if seconds:
            out = _restamp(raw, ts)
        kept.append((ts, out))
    kept.sort(key=itemgetter(0))  # stable: equal timestamps keep their recorded order
    parts: list[Any] = [b"["]
    for i, (_ts, raw) in enumerate(kept):
        if i:
            parts.append(b",")
        parts.append(raw)
    parts.append(b"]")
    return b"".join(parts), len(kept), dropped


def read_recording(payload: bytes, limit: int) -> Recording:
    """Split, decompress (capped at limit bytes) and normalise one replay_recording payload."""
    end = payload.find(b"\n", 0, 1024)
    if end < 0:
        raise BadRequest("replay recording has no segment header line")
    try:
        head = _DECODE.decode(payload[:end])
    except msgspec.DecodeError:
        raise BadRequest("replay recording's header line is not JSON") from None
    segment = head.get("segment_id") if isinstance(head, dict) else None
    if (
        not isinstance(segment, int)
        or isinstance(segment, bool)
        or not 0 <= segment <= MAX_SEGMENT_ID
    ):
        raise BadRequest(f"replay recording needs a segment_id from 0 to {MAX_SEGMENT_ID}")
    body = payload[end + 1 :]
    if body.lstrip()[:1] == b"[":
        if len(body) > limit:
            raise PayloadTooLarge(f"replay recording is over {limit} bytes")
    else:
        body = _inflate(body, limit)
    events, count, dropped = normalise(body)
    return Recording(segment, events, count, dropped)


@dataclass(frozen=True, slots=True)
class SentryReplay:
    """One segment's facts from its replay_event (and the envelope header)."""

    replay_id: str
    segment_id: int | None
    started_at: int | None
    error_ids: tuple[str, ...]
    meta: SessionMeta  # id is filled in by the adapter


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def read_replay_event(
    payload: bytes | None,
    header: dict[str, Any],
    *,
    user_agent: str | None,
) -> SentryReplay:
    """The replay_event item (may be absent: then the envelope header names the replay)."""
    obj: dict[str, Any] = {}
    if payload:
        try:
            decoded = _DECODE.decode(payload)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"malformed replay_event: {exc}") from None
        if not isinstance(decoded, dict):
            raise BadRequest("malformed replay_event: not a JSON object")
        obj = decoded
    replay_id = norm_id(obj.get("replay_id")) or norm_id(header.get("event_id"))
    if replay_id is None:
        raise BadRequest("a replay envelope needs a replay_id (32 hex digits)")
    segment = obj.get("segment_id")
    if segment is not None and (
        not isinstance(segment, int)
        or isinstance(segment, bool)
        or not 0 <= segment <= MAX_SEGMENT_ID
    ):
        raise BadRequest(f"replay_event needs a segment_id from 0 to {MAX_SEGMENT_ID}")
    start = obj.get("replay_start_timestamp")
    started = millis(start, -1) if start is not None else -1
    urls = [u for u in _list(obj.get("urls")) if isinstance(u, str) and u]
    request = obj.get("request")
    request_url = request.get("url") if isinstance(request, dict) else None
    page = text(urls[-1] if urls else request_url, TEXT)
    ids = (norm_id(e) for e in _list(obj.get("error_ids"))[:MAX_ERROR_IDS])
    error_ids = tuple(i for i in ids if i)
    meta = SessionMeta(
        id="pending-session",
        started_at=started if started >= 0 else None,
        user=user_of(obj),
        user_agent=user_agent_of(obj) or text(user_agent, TEXT),
        url=page,
        release=text(obj.get("release"), SHORT),
        environment=text(obj.get("environment"), SHORT),
        sdk=sdk_label(obj, header),
    )
    return SentryReplay(
        replay_id=replay_id,
        segment_id=segment,
        started_at=meta.started_at,
        error_ids=error_ids,
        meta=meta,
    )


def replay_envelope(replay: SentryReplay, recording: Recording, session_id: str) -> Envelope:
    """The ingest batch for one segment: the session's chunk number is the segment id."""
    if replay.segment_id is not None and replay.segment_id != recording.segment_id:
        raise BadRequest(
            f"replay_event says segment {replay.segment_id}, the recording {recording.segment_id}"
        )
    meta = msgspec.structs.replace(replay.meta, id=session_id)
    return Envelope(session=meta, seq=recording.segment_id, events=msgspec.Raw(recording.events))
