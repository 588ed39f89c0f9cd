"""Replay artifacts: a session's chunks → one ordered, de-duplicated event array, summarised.

Artifact: `replays/<site>/<session>/v<N>.zst`, the rrweb events exactly as the SDK sent them
(bytes untouched), sorted by timestamp (ties keep chunk sequence and in-chunk order), duplicates
dropped, starting at the first full snapshot (with the meta event just before it), stored as
time-ordered segments with checkpoints (format and reader: replay/artifact.py). N is the
session's chunk count when it was read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from operator import itemgetter

import msgspec
import zstandard

from retrospec.replay import artifact
from retrospec.replay.markers import (
    FULL_SNAPSHOT,
    META,
    FailureRow,
    Summary,
    Timeline,
    url_host,
)
from retrospec.storage.blobs import BlobStore, CorruptBlob, decompress, read_frame, replay_key

# Memory bound for one build (peak memory is about 2.5x the raw bytes read): chunks past this
# many raw bytes are left out of the artifact. 48 MB is about four hours of a typical page.
MAX_SESSION_RAW_BYTES = 48 * 1024 * 1024
# Page-load events this close before the first full snapshot belong to it (rrweb emits them
# together): DomContentLoaded, Load, Meta.
META_GAP_MS = 1_000
_LEAD_TYPES = frozenset({0, 1, META})


class _Head(msgspec.Struct):
    type: int
    timestamp: int | float
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


_EVENTS = msgspec.json.Decoder(list[msgspec.Raw])
_HEAD = msgspec.json.Decoder(_Head)

# (timestamp, type, raw event, raw data)
Event = tuple[int, int, msgspec.Raw, msgspec.Raw]


class CorruptChunk(Exception):
    """A chunk that cannot be read: missing blob, bad zstd, not a JSON array."""


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """A stored chunk of one session: a frame of a segment, or (offset None) a whole blob."""

    seq: int
    key: str
    raw_bytes: int
    offset: int | None = None
    length: int | None = None


@dataclass(slots=True)
class Work:
    """One consistent read of what a session's build needs."""

    id: str
    site_id: str
    version: int
    built_chunks: int
    status: str
    entry_url: str | None
    chunks: list[ChunkRef]
    failures: list[FailureRow]


@dataclass(slots=True)
class Merged:
    """Events of a session in play order."""

    events: list[Event] = field(default_factory=list)
    raw_bytes: int = 0
    duplicates: int = 0
    invalid: int = 0
    truncated: bool = False


def read_events(blobs: BlobStore, chunks: list[ChunkRef], max_bytes: int) -> Merged:
    """Read and decode chunks in seq order, drop duplicate events, sort stably by timestamp."""
    out = Merged()
    seen: set[bytes] = set()
    for chunk in chunks:
        if out.raw_bytes and out.raw_bytes + chunk.raw_bytes > max_bytes:
            out.truncated = True
            break
        try:
            stored = read_frame(blobs, chunk.key, chunk.offset, chunk.length)
        except FileNotFoundError:
            raise CorruptChunk(f"chunk {chunk.seq}: blob {chunk.key} is missing") from None
        except CorruptBlob as exc:
            raise CorruptChunk(f"chunk {chunk.seq}: blob is truncated ({exc})") from None
        except OSError as exc:
            # Recorded like corruption so a bad blob cannot make every run retry it; a new
            # chunk for the session triggers a fresh attempt.
            raise CorruptChunk(f"chunk {chunk.seq}: blob could not be read ({exc})") from None
        try:
            data = decompress(stored)
        except zstandard.ZstdError as exc:
            raise CorruptChunk(f"chunk {chunk.seq}: not valid zstd ({exc})") from None
        try:
            raws = _EVENTS.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CorruptChunk(f"chunk {chunk.seq}: not a JSON array of events ({exc})") from None
        out.raw_bytes += len(data)
        for raw in raws:
            try:
                head = _HEAD.decode(raw)
            except msgspec.ValidationError:
                out.invalid += 1  # null, or an object without type/timestamp: unplayable
                continue
            # Identity: the same event re-sent (overlapping batches, a chunk stored twice) has
            # the same bytes, timestamp and type included; two different events never do. A
            # 128-bit digest keeps the set small (no tuple per event) with no practical collisions.
            ident = hashlib.blake2b(raw, digest_size=16).digest()
            if ident in seen:
                out.duplicates += 1
                continue
            seen.add(ident)
            out.events.append((int(head.timestamp), head.type, raw, head.data))
    out.events.sort(key=itemgetter(0))  # stable: ties keep (seq, position in chunk)
    return out


def playable(events: list[Event]) -> tuple[list[Event], int] | None:
    """The events a player can start from, and how many earlier ones were left out.

    Playback starts at the first full snapshot, preceded by what rrweb records with it (the
    DomContentLoaded, Load and Meta events just before); incremental events before any full
    snapshot have nothing to apply to and are dropped.
    """
    first = next((i for i, e in enumerate(events) if e[1] == FULL_SNAPSHOT), None)
    if first is None:
        return None
    snapshot_ts = events[first][0]
    lead = [e for e in events[:first] if e[1] in _LEAD_TYPES and snapshot_ts - e[0] <= META_GAP_MS]
    return [*lead, *events[first:]], first - len(lead)


@dataclass(slots=True)
class Built:
    """The outcome of one build, ready to be written."""

    status: str
    reason: str | None
    key: str | None = None
    stored_bytes: int | None = None
    summary: Summary | None = None
    segments: str | None = None  # the segment index, as stored in sessions.replay_segments


_STORES: dict[str, BlobStore] = {}


def build_from_url(blob_url: str, work: Work, max_bytes: int) -> Built:
    """build() with the store named by URL (a top-level function, for the compute process)."""
    store = _STORES.get(blob_url)
    if store is None:
        store = _STORES[blob_url] = BlobStore(blob_url)
    return build(store, work, max_bytes)


def build(blobs: BlobStore, work: Work, max_bytes: int) -> Built:
    """Everything but the row update: read, merge, summarise, write the artifact blob."""
    try:
        merged = read_events(blobs, work.chunks, max_bytes)
    except CorruptChunk as exc:
        return Built("error", str(exc))
    found = playable(merged.events)
    timeline = Timeline(work.failures, url_host(work.entry_url))
    for ts, etype, _raw, data in merged.events if found is None else found[0]:
        timeline.feed(ts, etype, data)
    summary = timeline.finish()
    if found is None:
        reason = (
            f"no full snapshot yet ({len(merged.events)} events in {len(work.chunks)} chunks); "
            "the replay becomes playable when the recorder sends one"
        )
        return Built("no_snapshot", reason, summary=summary)
    events, left_out = found
    notes = []
    if merged.truncated:
        notes.append(f"replay limited to the first {max_bytes // (1024 * 1024)} MB of events")
    if left_out:
        notes.append(f"{left_out} events before the first full snapshot were left out")
    if merged.invalid:
        notes.append(f"{merged.invalid} malformed events were skipped")
    blob, segments, _size = artifact.encode(events)
    key = replay_key(work.site_id, work.id, work.version)
    blobs.put_raw(key, blob)
    return Built(
        "ready", "; ".join(notes) or None, key, len(blob), summary, artifact.dump_index(segments)
    )
