"""The issue_clips table: one clip per issue, its status, its blobs, and their retention.

Read by the issue page, `issues show`, reports and alerts (through the evidence), written by
the clips job (retrospec/video/clips.py) and detached by purge when the replay expires.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from retrospec.storage.blobs import parse_clip_key

_COLUMNS = (
    "cluster_id, session_id, failure_id, status, reason, video_key, poster_key, video_bytes, "
    "poster_bytes, duration_ms, created_at"
)


@dataclass(frozen=True, slots=True)
class Clip:
    """An issue's clip: ready (keys set), failed (reason) or expired."""

    issue_id: int
    session_id: str
    failure_id: int | None
    status: str
    reason: str | None
    video_key: str | None
    poster_key: str | None
    video_bytes: int
    poster_bytes: int
    duration_ms: int | None
    created_at: int

    @property
    def ready(self) -> bool:
        """Whether the video can be served."""
        return self.status == "ready" and self.video_key is not None


def get_clip(conn: sqlite3.Connection, issue_id: int) -> Clip | None:
    """The issue's clip row, None if no render was tried yet."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM issue_clips WHERE cluster_id = ?", (issue_id,)
    ).fetchone()
    return None if row is None else Clip(*row)


def issues_without_clip(conn: sqlite3.Connection, limit: int) -> list[int]:
    """Promoted issues (not candidates, not merged away) with no clip row, newest first."""
    rows = conn.execute(
        "SELECT c.id FROM clusters c WHERE c.status IN ('open', 'resolved', 'ignored') "
        "AND c.promoted_at IS NOT NULL AND c.merged_into IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM issue_clips k WHERE k.cluster_id = c.id) "
        "ORDER BY c.promoted_at DESC, c.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [int(r[0]) for r in rows]


def save_clip(conn: sqlite3.Connection, clip: Clip) -> None:
    """Record a render's outcome (the blobs are stored before this row points at them)."""
    conn.execute(
        f"INSERT INTO issue_clips ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (cluster_id) DO NOTHING",
        (
            clip.issue_id,
            clip.session_id,
            clip.failure_id,
            clip.status,
            clip.reason,
            clip.video_key,
            clip.poster_key,
            clip.video_bytes,
            clip.poster_bytes,
            clip.duration_ms,
            clip.created_at,
        ),
    )


def detach_expired(
    conn: sqlite3.Connection, stamp: int, limit: int
) -> tuple[int, list[tuple[str, int]]]:
    """Expire up to limit clips whose replay has expired: (clips, [(key, bytes) to delete])."""
    rows = conn.execute(
        "SELECT k.cluster_id, k.video_key, k.poster_key, k.video_bytes, k.poster_bytes "
        "FROM issue_clips k JOIN sessions s ON s.id = k.session_id "
        "WHERE k.status = 'ready' AND s.replay_status = 'expired' LIMIT ?",
        (limit,),
    ).fetchall()
    conn.executemany(
        "UPDATE issue_clips SET status = 'expired', video_key = NULL, poster_key = NULL, "
        "expired_at = ? WHERE cluster_id = ?",
        [(stamp, r[0]) for r in rows],
    )
    keys: list[tuple[str, int]] = []
    for _id, video, poster, video_bytes, poster_bytes in rows:
        if video:
            keys.append((str(video), int(video_bytes)))
        if poster:
            keys.append((str(poster), int(poster_bytes)))
    return len(rows), keys


def clip_key_live(conn: sqlite3.Connection, key: str) -> bool:
    """Whether a clip row points at this blob key."""
    parsed = parse_clip_key(key)
    if parsed is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM issue_clips WHERE cluster_id = ? AND (video_key = ? OR poster_key = ?)",
        (parsed[2], key, key),
    ).fetchone()
    return row is not None
