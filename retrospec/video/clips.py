"""The clips job: render each promoted issue's replay clip once, off the ingest path.

For an issue without a clip row, the representative session's 20 s before the failure (and 3 s
after) is rendered to MP4 with a poster PNG at the failure, in a child process of its own
(retrospec/video/child.py) under a memory, CPU and wall-clock cap, one render at a time. Blobs
are stored before the row that points at them; a session that cannot render gets a `failed`
row with the reason and is not tried again, so it never blocks other issues or jobs. Without
the video extra or Chromium the run renders nothing and its message says what to install.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from retrospec.clock import now_ms
from retrospec.errors import NotFound, VideoUnavailable
from retrospec.issues.evidence import get_evidence
from retrospec.jobs.context import JobContext, JobResult
from retrospec.replay import queries as replays
from retrospec.storage.blobs import clip_key
from retrospec.video.clip import AROUND_FIRST
from retrospec.video.render import find_tools
from retrospec.video.store import Clip, issues_without_clip, save_clip
from retrospec.video.timeline import AFTER_FAILURE_MS

log = logging.getLogger(__name__)

BATCH = 3  # renders per run: each takes seconds, and the next run picks up the rest
CLIP_WIDTH = 960
# A session that sent failures but no replay data for this long never will (a Sentry SDK
# without replay, or replays turned off).
NO_REPLAY_AFTER_MS = 10 * 60_000
# A live session's replay may not reach past the failure yet; wait this long for it.
SETTLE_MS = 60_000


def run(ctx: JobContext) -> JobResult:
    """Render clips of promoted issues that have none yet."""
    if not ctx.settings.clips:
        return JobResult(message="clips are off (clips = false)")
    try:
        find_tools(ctx.settings.chromium or None)
    except VideoUnavailable as exc:
        return JobResult(message=exc.message)
    reader = ctx.reader()
    try:
        # More candidates than renders: issues whose replay is still being built are skipped
        # (and tried again next run) without holding back the ones behind them.
        due = issues_without_clip(reader, BATCH * 20)
        outcomes: dict[str, int] = {}
        for issue_id in due:
            if outcomes.get("ready", 0) + outcomes.get("failed", 0) >= BATCH:
                break
            ctx.check_stop()
            clip = _clip_of(ctx, reader, issue_id)
            if clip is None:
                continue
            ctx.write(partial(save_clip, clip=clip))
            outcomes[clip.status] = outcomes.get(clip.status, 0) + 1
    finally:
        reader.close()
    summary = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
    return JobResult(
        items=sum(outcomes.values()),
        message=f"{sum(outcomes.values())} clips" + (f": {summary}" if summary else ""),
        details={"outcomes": outcomes},
    )


def _clip_of(ctx: JobContext, reader: sqlite3.Connection, issue_id: int) -> Clip | None:
    """The outcome of rendering one issue's clip (None: the issue is gone, try nothing)."""
    try:
        ev = get_evidence(reader, issue_id)
    except NotFound:
        return None
    rep = ev.representative

    def outcome(status: str, reason: str | None, **rest: Any) -> Clip:
        return Clip(
            issue_id=issue_id,
            session_id=rep.session_id if rep else "",
            failure_id=rep.failure_id if rep else None,
            status=status,
            reason=reason,
            video_key=rest.get("video_key"),
            poster_key=rest.get("poster_key"),
            video_bytes=rest.get("video_bytes", 0),
            poster_bytes=rest.get("poster_bytes", 0),
            duration_ms=rest.get("duration_ms"),
            created_at=now_ms(),
        )

    if rep is None:
        return outcome("failed", "no affected session was recorded")
    if rep.expired:
        return outcome("expired", "the replay has expired")
    session = replays.get_session(reader, rep.session_id)
    if rep.replay_status == "pending" or (
        rep.replay_status == "none" and now_ms() - session.last_seen_at < NO_REPLAY_AFTER_MS
    ):
        return None  # the replay job has not built it yet: try again on a later run
    if rep.replay_status == "none":
        return outcome("failed", "the session recorded no replay")
    recent = now_ms() - session.last_seen_at < SETTLE_MS
    end = session.replay_end_ts
    if recent and (end is None or end < rep.ts + AFTER_FAILURE_MS):
        return None  # the seconds after the failure may still be arriving: wait for them
    with tempfile.TemporaryDirectory(prefix="retrospec-clip-") as tmp:
        out, poster = Path(tmp) / "clip.mp4", Path(tmp) / "poster.png"
        result = _render_in_child(ctx, rep.session_id, rep.failure_id, out, poster)
        if "error" in result:
            return outcome("failed", str(result["error"])[:500])
        video_key = clip_key(session.site_id, session.id, issue_id, "mp4")
        poster_key = clip_key(session.site_id, session.id, issue_id, "png")
        video, still = out.read_bytes(), poster.read_bytes() if poster.exists() else b""
        # Stored as they are: video is compressed already, and the page streams byte ranges.
        ctx.blobs.put_raw(video_key, video)
        if still:
            ctx.blobs.put_raw(poster_key, still)
    return outcome(
        "ready",
        None,
        video_key=video_key,
        poster_key=poster_key if still else None,
        video_bytes=len(video),
        poster_bytes=len(still),
        duration_ms=round(float(result["duration_s"]) * 1000),
    )


def _render_in_child(
    ctx: JobContext, session_id: str, failure_id: int, out: Path, poster: Path
) -> dict[str, Any]:
    """Run retrospec.video.child under the caps; its JSON, or {"error": reason}."""
    s = ctx.settings
    spec = {
        "session_id": session_id,
        "failure_id": failure_id or AROUND_FIRST,
        "out": str(out),
        "poster": str(poster),
        "width": CLIP_WIDTH,
        "chromium": s.chromium,
        "database": ctx.database,
        "blob_url": ctx.blobs.url,
        "memory_mb": s.clip_memory_mb,
        "cpu_s": max(1, int(s.clip_timeout_seconds)),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrospec.video.child", json.dumps(spec)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout kills browser and encoder too
    )
    try:
        stdout, stderr = proc.communicate(timeout=s.clip_timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)
        return {"error": f"the render took longer than {s.clip_timeout_seconds:g} s"}
    finally:
        _kill_group(proc)  # nothing of a finished render may outlive it
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if proc.returncode == 0 and "duration_s" in result:
        return result
    if "error" in result:
        return result
    tail = stderr.decode(errors="replace").strip().splitlines()
    why = tail[-1] if tail else f"exit status {proc.returncode}"
    if proc.returncode is not None and proc.returncode < 0:
        why = f"killed by signal {-proc.returncode} (memory or CPU cap?)"
    log.warning("clip render of session %s failed: %s", session_id, why)
    return {"error": f"the render failed: {why}"}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
