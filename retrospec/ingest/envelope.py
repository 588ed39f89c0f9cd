"""The ingest envelope (msgspec): decoded strictly, while rrweb events stay raw bytes."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import msgspec

from retrospec.ids import SESSION_ID_PATTERN
from retrospec.storage.blobs import compress, decompress

FailureKind = Literal["error", "unhandledrejection", "network", "console", "custom"]
FAILURE_KINDS: tuple[str, ...] = ("error", "unhandledrejection", "network", "console", "custom")
# An rrweb custom event tag for a user action known without the DOM (a Sentry breadcrumb):
# payload {"kind": "click" | "input" | "navigation", "label": text}. The replay job marks it.
STEP_TAG = "retrospec.step"
STEP_KINDS = ("click", "input", "navigation")

Short = Annotated[str, msgspec.Meta(max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]
Url = Annotated[str, msgspec.Meta(max_length=4096)]
Stack = Annotated[str, msgspec.Meta(max_length=65536)]
SessionId = Annotated[str, msgspec.Meta(pattern=SESSION_ID_PATTERN)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=32503680000000)]  # up to year 3000
# Line and column numbers: anything bigger is not a source position (and not a 64-bit int).
Position = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]


class User(msgspec.Struct, forbid_unknown_fields=False):
    """The identified user, as the site passed it to identify()."""

    id: Short | None = None
    email: Short | None = None
    name: Short | None = None


class SessionMeta(msgspec.Struct, forbid_unknown_fields=False):
    """Facts about the browser session, sent with every batch."""

    id: SessionId
    started_at: Millis | None = None
    anonymous_id: Short | None = None
    user: User | None = None
    user_agent: Text | None = None
    url: Url | None = None
    release: Short | None = None
    environment: Short | None = None
    sdk: Short | None = None
    sampled: bool = True


class Failure(msgspec.Struct, forbid_unknown_fields=False):
    """One captured failure; network fields only for kind 'network'."""

    kind: FailureKind
    ts: Millis
    type: Short | None = None
    message: Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    stack: Stack | None = None
    url: Url | None = None
    filename: Url | None = None
    lineno: Position | None = None
    colno: Position | None = None
    method: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    request_url: Url | None = None
    status: Annotated[int, msgspec.Meta(ge=0, le=999)] | None = None
    duration_ms: Annotated[float, msgspec.Meta(ge=0, le=1e10)] | None = None
    fingerprint: list[Short] | None = None
    # Anything else the SDK or beforeSend attached; kept verbatim (never parsed) in the payload.
    context: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    tags: dict[Short, Short] | None = None
    # Debug IDs of the scripts on the page (script URL -> id), so source maps match by id.
    debug_ids: dict[Url, Short] | None = None


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """One batch from one browser session."""

    session: SessionMeta
    seq: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
    v: int = 1
    site: Short | None = None
    # rrweb events stay undecoded bytes (an empty Raw when the batch has none).
    events: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    failures: list[Failure] = []


class FailurePayload(msgspec.Struct, omit_defaults=True):
    """The heavy part of a failure, stored as JSON and purged with the replay data."""

    stack: str | None = None
    filename: str | None = None
    lineno: int | None = None
    colno: int | None = None
    fingerprint: list[str] | None = None
    context: Any = None
    tags: dict[str, str] | None = None
    debug_ids: dict[str, str] | None = None


ENVELOPE_DECODER = msgspec.json.Decoder(Envelope)
PAYLOAD_ENCODER = msgspec.json.Encoder()
PAYLOAD_DECODER = msgspec.json.Decoder(FailurePayload)
# Stored payloads over this many bytes of JSON are zstd-compressed, as "z1:" + base64 (the
# column stays TEXT, so it ports as it is); smaller ones stay plain JSON.
PAYLOAD_COMPRESS_FROM = 1024
_ZSTD_MARK = "z1:"


def encode_payload(payload: FailurePayload) -> str | None:
    """The failures.payload column for a payload (None when it is empty)."""
    encoded = PAYLOAD_ENCODER.encode(payload)
    if encoded == b"{}":
        return None
    if len(encoded) < PAYLOAD_COMPRESS_FROM:
        return encoded.decode("utf-8")
    return _ZSTD_MARK + base64.b64encode(compress(encoded)).decode("ascii")


def decode_payload(stored: str | bytes) -> FailurePayload:
    """A failures.payload value, plain JSON or compressed, back to its payload."""
    text = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else stored
    if not text.startswith(_ZSTD_MARK):
        return PAYLOAD_DECODER.decode(text)
    try:
        raw = decompress(base64.b64decode(text[len(_ZSTD_MARK) :]), max_size=1 << 24)
    except Exception as exc:  # bad base64 or zstd: readers treat it like bad JSON
        raise msgspec.DecodeError(f"corrupt compressed payload: {exc}") from None
    return PAYLOAD_DECODER.decode(raw)
