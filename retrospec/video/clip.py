"""One clip of one session: check the replay, choose the window, plan the frames, render.

Shared by `retrospec sessions video` and the clips job (which runs it in a capped child
process, retrospec/video/child.py). Every refusal is one line (a RetrospecError) and leaves no
file behind.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrospec.errors import BadRequest, NotFound
from retrospec.replay import queries as replays
from retrospec.replay.markers import strip_url
from retrospec.storage.blobs import BlobStore
from retrospec.video import render as renderer
from retrospec.video import timeline

AROUND_FIRST = 0  # --around-failure without an id: the session's first failure


@dataclass(frozen=True, slots=True)
class ClipRequest:
    """What to render: a session, and either a failure to centre on or a window."""

    session_id: str
    out: Path
    failure_id: int | None = None  # AROUND_FIRST: the first failure of the session
    from_ms: int | None = None
    to_ms: int | None = None
    speed: float = 1.0
    width: int = 960
    poster: Path | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """A session's replay, read and checked, ready to render."""

    session: replays.SessionView
    events: list[dict[str, Any]]
    markers: list[timeline.CaptionMarker]
    failures: list[replays.FailureView]


def load_source(conn: sqlite3.Connection, blobs: BlobStore, session_id: str) -> Source:
    """The session's playable replay (NotFound with the reason when there is none)."""
    session = replays.get_session(conn, session_id)
    if session.expired:
        raise NotFound(f"the replay of session {session_id} has expired")
    if session.replay_status == "no_snapshot":
        raise NotFound(f"session {session_id} has no full page snapshot to draw")
    if session.replay_key is None:
        raise NotFound(f"session {session_id} has no replay yet ({session.replay_status})")
    # The replay read path (whatever the storage layout) hands back a JSON array of events.
    events = timeline.playable_events(json.loads(replays.load_events(blobs, session.replay_key)))
    if not any(e["type"] == 2 for e in events):
        raise NotFound(f"session {session_id} has no full page snapshot to draw")
    markers = [
        timeline.CaptionMarker(m.ts, m.kind, m.label or "")
        for m in replays.list_markers(conn, session_id)
        if m.kind in ("click", "rage_click", "navigation", "failure")
    ]
    return Source(session, events, markers, replays.list_session_failures(conn, session_id))


def _failure(source: Source, failure_id: int) -> replays.FailureView:
    if failure_id == AROUND_FIRST:
        if not source.failures:
            raise NotFound(f"session {source.session.id} has no failure to centre on")
        return source.failures[0]
    for f in source.failures:
        if f.id == failure_id:
            return f
    raise NotFound(f"failure {failure_id} is not in session {source.session.id}")


def check_output(req: ClipRequest) -> None:
    """Refuse an unusable output path before anything is read."""
    renderer.output_format(req.out)
    if req.out.is_dir():
        raise BadRequest(f"{req.out} is a directory")
    if not req.out.parent.is_dir():
        raise NotFound(f"no directory {req.out.parent}")


def make_clip(source: Source, req: ClipRequest, tools: renderer.Tools) -> dict[str, Any]:
    """Render the clip req asks for from a loaded replay; returns what `--json` prints."""
    s = source.session
    first, last = source.events[0]["timestamp"], source.events[-1]["timestamp"]
    origin = s.replay_start_ts if s.replay_start_ts is not None else first
    failure = _failure(source, req.failure_id) if req.failure_id is not None else None
    start, end = timeline.window(
        first,
        last,
        origin,
        failure_ts=failure.ts if failure else None,
        from_ms=req.from_ms,
        to_ms=req.to_ms,
    )
    plan = timeline.plan(
        source.events,
        source.markers,
        start,
        end,
        origin_ts=origin,
        entry_url=strip_url(s.entry_url or ""),
        speed=req.speed,
    )
    poster_frame = None
    if req.poster is not None:
        poster_frame = timeline.failure_frame(plan, failure.ts if failure else end)
    rendered = renderer.render(
        source.events,
        plan,
        req.out,
        viewport=timeline.viewport(source.events),
        width=req.width,
        tools=tools,
        poster_frame=poster_frame,
    )
    if req.poster is not None and rendered.poster is not None:
        _write_atomic(req.poster, rendered.poster)
    return {
        "schema_version": 1,
        "session_id": s.id,
        "failure_id": failure.id if failure else None,
        "out": str(req.out),
        "poster": str(req.poster) if req.poster is not None else None,
        "from_ms": start - origin,
        "to_ms": end - origin,
        "failure_ms": failure.ts - origin if failure else None,
        "speed": req.speed,
        "fps": plan.fps,
        "frames": rendered.frames,
        "frames_drawn": rendered.drawn,
        "duration_s": round(rendered.duration_s, 3),
        "skipped_idle_ms": plan.skipped_ms,
        "width": rendered.width,
        "height": rendered.height,
        "bytes": rendered.size,
        "blocked_requests": rendered.blocked_requests,
    }


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
