"""A clip's plan: which replay instant each video frame shows, and the caption under it.

Pure functions of the session's events and markers; no browser, no encoder. Idle stretches are
fast-forwarded the way rrweb-player's skipInactive does: a gap of more than 10 s between two user
interactions plays in one second of video, captioned as skipped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retrospec.clock import replay_clock
from retrospec.errors import BadRequest

FPS = 10
BEFORE_FAILURE_MS = 20_000
AFTER_FAILURE_MS = 3_000
# rrweb-player's inactivePeriodThreshold: a gap longer than this between user interactions is
# idle, and the player speeds through it.
IDLE_THRESHOLD_MS = 10_000
IDLE_SHOWN_MS = 1_000
CLICK_SHOWN_MS = 1_500
MAX_FRAMES = 36_000  # one hour at 10 fps: a bigger plan is a mistake, not a clip
_INCREMENTAL = 3
_CUSTOM = 5
# rrweb's isUserInteraction: incremental sources MouseMove..Input.
_INTERACTION_SOURCES = range(1, 6)


@dataclass(frozen=True, slots=True)
class CaptionMarker:
    """A point the caption strip reports: a click, a page change or a failure."""

    ts: int
    kind: str  # click | rage_click | navigation | failure
    label: str


@dataclass(frozen=True, slots=True)
class Frame:
    """One video frame: the replay instant it shows and the caption drawn under it."""

    ts: int
    clock: str
    url: str
    action: str
    failure: str
    skipping: str


@dataclass(frozen=True, slots=True)
class Plan:
    """Every frame of a clip, the window it covers and what idle time it skipped."""

    start_ts: int
    end_ts: int
    fps: int
    frames: list[Frame]
    skipped_ms: int

    @property
    def duration_s(self) -> float:
        """Length of the video."""
        return len(self.frames) / self.fps


def playable_events(events: Sequence[Any]) -> list[dict[str, Any]]:
    """The events the renderer plays: well-formed, custom events dropped, in time order."""
    kept = [
        e
        for e in events
        if isinstance(e, dict)
        and isinstance(e.get("timestamp"), int | float)
        and isinstance(e.get("type"), int)
        and e["type"] != _CUSTOM  # the caption strip shows our markers instead
    ]
    kept.sort(key=lambda e: e["timestamp"])
    return kept


def viewport(events: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """The recorded page's first viewport size (width, height) from its meta event."""
    for e in events:
        data = e.get("data")
        if e.get("type") == 4 and isinstance(data, dict):
            w, h = data.get("width"), data.get("height")
            if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
                return w, h
    return 1280, 800


def window(
    first_ts: int,
    last_ts: int,
    origin_ts: int,
    *,
    failure_ts: int | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
) -> tuple[int, int]:
    """The clip's [start, end] timestamps, clamped to the recording (BadRequest if empty).

    from_ms/to_ms are offsets from origin_ts (the replay start, as the dashboard's ?t= uses);
    around a failure the window defaults to 20 s before it to 3 s after.
    """
    if failure_ts is not None:
        start = failure_ts - BEFORE_FAILURE_MS
        end = failure_ts + AFTER_FAILURE_MS
    else:
        start, end = first_ts, last_ts
    if from_ms is not None:
        start = origin_ts + from_ms
    if to_ms is not None:
        end = origin_ts + to_ms
    span = f"{first_ts - origin_ts}-{last_ts - origin_ts} ms"
    if end <= start:
        raise BadRequest(f"empty window: {start - origin_ts}-{end - origin_ts} ms")
    clamped = max(start, first_ts), min(end, last_ts)
    if clamped[1] <= clamped[0]:
        raise BadRequest(
            f"window {start - origin_ts}-{end - origin_ts} ms is outside the session ({span})"
        )
    return clamped


def _segments(
    interactions: Sequence[int], start: int, end: int, speed: float
) -> tuple[list[tuple[float, float, int, int, bool]], int]:
    """(video_from_s, video_to_s, replay_from, replay_to, idle) pieces covering [start, end]."""
    points = sorted({start, end, *(t for t in interactions if start < t < end)})
    pieces: list[tuple[float, float, int, int, bool]] = []
    at = 0.0
    skipped = 0
    for a, b in itertools.pairwise(points):
        idle = b - a > IDLE_THRESHOLD_MS
        shown = IDLE_SHOWN_MS if idle else b - a
        if idle:
            skipped += b - a - IDLE_SHOWN_MS
        length = shown / 1000 / speed
        pieces.append((at, at + length, a, b, idle))
        at += length
    return pieces, skipped


def _latest(markers: Sequence[CaptionMarker], ts: int, kinds: tuple[str, ...]) -> CaptionMarker:
    found = CaptionMarker(0, "", "")
    for m in markers:
        if m.ts > ts:
            break
        if m.kind in kinds:
            found = m
    return found


def plan(
    events: Sequence[dict[str, Any]],
    markers: Sequence[CaptionMarker],
    start: int,
    end: int,
    *,
    origin_ts: int,
    entry_url: str,
    speed: float = 1.0,
    fps: int = FPS,
) -> Plan:
    """The frames of the clip of [start, end] played at speed (idle gaps fast-forwarded)."""
    if speed <= 0 or not math.isfinite(speed):
        raise BadRequest("speed must be a positive number")
    interactions = [
        int(e["timestamp"])
        for e in events
        if e.get("type") == _INCREMENTAL
        and isinstance(e.get("data"), dict)
        and e["data"].get("source") in _INTERACTION_SOURCES
    ]
    pieces, skipped = _segments(interactions, start, end, speed)
    total_s = pieces[-1][1] if pieces else 0.0
    count = max(1, round(total_s * fps))
    if count > MAX_FRAMES:
        raise BadRequest(f"the clip would be {count // fps} s long; choose a shorter window")
    ordered = sorted(markers, key=lambda m: m.ts)
    frames: list[Frame] = []
    piece = 0
    for k in range(count):
        t = k / fps
        while piece < len(pieces) - 1 and t >= pieces[piece][1]:
            piece += 1
        v0, v1, r0, r1, idle = pieces[piece]
        share = 0.0 if v1 <= v0 else min(1.0, (t - v0) / (v1 - v0))
        ts = min(end, int(r0 + (r1 - r0) * share))
        nav = _latest(ordered, ts, ("navigation",))
        click = _latest(ordered, ts, ("click", "rage_click"))
        failure = _latest(ordered, ts, ("failure",))
        action = ""
        if click.kind and ts - click.ts <= CLICK_SHOWN_MS:
            action = ("Rage click " if click.kind == "rage_click" else "Click ") + click.label
        frames.append(
            Frame(
                ts=ts,
                clock=replay_clock(ts - origin_ts),
                url=nav.label or entry_url,
                action=action,
                # A failure stays on the strip from the moment it happens, if it is in the clip.
                failure=failure.label if failure.kind and failure.ts >= start else "",
                skipping=f"skipping {replay_clock(r1 - r0)} idle" if idle else "",
            )
        )
    return Plan(start, end, fps, frames, skipped)


def failure_frame(p: Plan, failure_ts: int) -> int:
    """Index of the first frame at or after the failure (the poster), else the last frame."""
    for i, f in enumerate(p.frames):
        if f.ts >= failure_ts:
            return i
    return len(p.frames) - 1
