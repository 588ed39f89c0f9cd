"""The replay artifact format: time-ordered segments with checkpoints, and its one reader.

A replay artifact (`replays/<site>/<session>/v<N>.zst`) is a run of zstd frames, one per
segment; each frame holds a JSON array of the segment's rrweb events in play order. The
segment index (start/end time, byte range, event count, checkpoint flag) is stored with the
session (sessions.replay_segments), so a player can fetch the segment that holds a time first,
as the stored bytes (zstd, no recompression), and the rest in the background.

A checkpoint segment starts with a full snapshot (with the Meta event rrweb records just before
it), so playback can start there without any earlier event. The SDK takes a full snapshot every
few minutes (rrweb's checkoutEveryNms); a long stretch without one (Sentry replays, older SDKs)
is still cut by time and size into plain segments, which a player loads from the checkpoint
before them. Artifacts written before segments are one frame with no index: one checkpoint
segment covering the whole replay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zstandard

from retrospec.storage.blobs import BlobStore, split_frames

ARTIFACT_LEVEL = 3
# A plain (non-checkpoint) cut: small enough that the first segment, which a player needs before
# its first frame, costs the same in a 5- and a 120-minute session.
SEGMENT_MAX_MS = 60_000
SEGMENT_MAX_RAW = 512 * 1024
FULL_SNAPSHOT = 2
META = 4
# Page-load events this close before a full snapshot belong to it (rrweb emits them together).
LEAD_GAP_MS = 1_000
_LEAD_TYPES = frozenset({0, 1, META})


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of an artifact: its time span, byte range and whether playback can start."""

    start_ts: int
    end_ts: int
    offset: int
    length: int
    events: int
    checkpoint: bool

    def as_list(self) -> list[int]:
        """Compact JSON form: [start, end, offset, length, events, checkpoint]."""
        return [
            self.start_ts,
            self.end_ts,
            self.offset,
            self.length,
            self.events,
            int(self.checkpoint),
        ]


def cut_points(heads: Sequence[tuple[int, int, int]]) -> list[tuple[int, bool]]:
    """(index, checkpoint) where each segment starts, for events given as (ts, type, bytes).

    Checkpoints start at every full snapshot, pulled back over its page-load lead events; plain
    cuts keep a segment under SEGMENT_MAX_MS and SEGMENT_MAX_RAW but never split a lead from
    its snapshot.
    """
    n = len(heads)
    checkpoints: dict[int, int] = {}  # segment start -> index of its full snapshot
    for i, (ts, etype, _size) in enumerate(heads):
        if etype != FULL_SNAPSHOT:
            continue
        start = i
        while (
            start > 0
            and heads[start - 1][1] in _LEAD_TYPES
            and ts - heads[start - 1][0] <= LEAD_GAP_MS
        ):
            start -= 1
        checkpoints[start] = i
    if not n:
        return []
    cuts: list[tuple[int, bool]] = [(0, True)]
    seg_ts, seg_raw = heads[0][0], heads[0][2]
    protect_until = checkpoints.get(0, 0)
    for i in range(1, n):
        ts, _etype, size = heads[i]
        if i in checkpoints:
            cuts.append((i, True))
            seg_ts, seg_raw, protect_until = ts, size, checkpoints[i]
        elif i > protect_until and (
            ts - seg_ts > SEGMENT_MAX_MS or seg_raw + size > SEGMENT_MAX_RAW
        ):
            cuts.append((i, False))
            seg_ts, seg_raw = ts, size
        else:
            seg_raw += size
    return cuts


def encode(events: Sequence[tuple[Any, ...]]) -> tuple[bytes, list[Segment], int]:
    """(artifact bytes, segment index, uncompressed size) of events (ts, type, raw JSON, ...)."""
    heads = [(int(e[0]), int(e[1]), len(e[2])) for e in events]
    cuts = cut_points(heads)
    comp = zstandard.ZstdCompressor(level=ARTIFACT_LEVEL)
    frames: list[bytes] = []
    segments: list[Segment] = []
    offset = 0
    total = 0
    for n, (start, checkpoint) in enumerate(cuts):
        end = cuts[n + 1][0] if n + 1 < len(cuts) else len(events)
        body = b"[" + b",".join(bytes(e[2]) for e in events[start:end]) + b"]"
        total += len(body)
        frame = comp.compress(body)
        frames.append(frame)
        segments.append(
            Segment(
                start_ts=heads[start][0],
                end_ts=heads[end - 1][0],
                offset=offset,
                length=len(frame),
                events=end - start,
                checkpoint=checkpoint,
            )
        )
        offset += len(frame)
    return b"".join(frames), segments, total


def dump_index(segments: Sequence[Segment]) -> str:
    """The index as stored in sessions.replay_segments (compact JSON)."""
    return json.dumps([s.as_list() for s in segments], separators=(",", ":"))


def parse_index(text: str | None) -> list[Segment] | None:
    """The stored index, or None for an artifact written before segments (or unreadable)."""
    if not text:
        return None
    try:
        rows = json.loads(text)
        return [
            Segment(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), bool(r[5])) for r in rows
        ]
    except (ValueError, TypeError, IndexError):
        return None


def needed(segments: Sequence[Segment], ts: int) -> list[int]:
    """The segments a player needs to show time ts: the checkpoint at or before it up to its own."""
    at = 0
    for i, segment in enumerate(segments):
        if segment.start_ts > ts:
            break
        at = i
    start = at
    while start > 0 and not segments[start].checkpoint:
        start -= 1
    return list(range(start, at + 1))


def open_cost(segments: Sequence[Segment] | None, whole: int, ts: int) -> int:
    """Stored bytes a player fetches before it can show time ts (whole: unsegmented size)."""
    if not segments:
        return whole
    return sum(segments[i].length for i in needed(segments, ts))


def read_all(blobs: BlobStore, key: str) -> bytes:
    """Every event of an artifact as one JSON array (FileNotFoundError if it is gone)."""
    frames = split_frames(blobs.get_raw(key))
    if len(frames) == 1:
        return frames[0]
    inner = [f.strip()[1:-1].strip() for f in frames]
    return b"[" + b",".join(part for part in inner if part) + b"]"


def read_segment(blobs: BlobStore, key: str, segment: Segment | None) -> bytes:
    """The stored zstd frame of one segment (None: an unsegmented artifact, the whole blob)."""
    if segment is None:
        return blobs.get_raw(key)
    data = blobs.get_range(key, segment.offset, segment.length)
    if len(data) != segment.length:
        raise FileNotFoundError(f"{key} ends before segment at {segment.offset}")
    return data
