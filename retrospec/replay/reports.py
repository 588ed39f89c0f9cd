"""A session's stable JSON document: the rows of `sessions list --json` and of the JSON API."""

from __future__ import annotations

from typing import Any

from retrospec.clock import iso
from retrospec.replay.queries import SessionView


def session_json(s: SessionView, base_url: str) -> dict[str, Any]:
    """One row of `sessions list --json` (and of GET /api/v1/sessions)."""
    playable = not s.expired and s.replay_status in ("ready", "pending")
    return {
        "id": s.id,
        "site": {"id": s.site_id, "name": s.site_name},
        "started_at": iso(s.started_at),
        "last_seen": iso(s.last_seen_at),
        "user": {"id": s.user_id, "email": s.user_email, "name": s.user_name},
        "user_key": s.user_key,
        "browser": s.browser,
        "os": s.os,
        "entry_url": s.entry_url,
        "last_url": s.last_url,
        "release": s.release,
        "environment": s.environment,
        "failures": s.failures,
        "replay": {
            "status": s.replay_status,
            "reason": s.replay_reason,
            "expired": s.expired,
            "duration_ms": s.duration_ms,
            "active_ms": s.active_ms,
            "pages": list(s.pages or []),
            "clicks": s.clicks,
            "rage_clicks": s.rage_clicks,
            "url": f"{base_url}/sessions/{s.id}" if playable else None,
        },
    }
