"""An issue's evidence as reports: the stable JSON schema, Markdown for bug trackers, links."""

from __future__ import annotations

import re
from typing import Any

from retrospec.clock import iso, replay_clock
from retrospec.issues.evidence import DAY_MS, FACETS, AffectedSession, Evidence
from retrospec.issues.queries import IssueSummary
from retrospec.safetext import neutralise_mentions, strip_controls

SCHEMA_VERSION = 1


def replay_url(ev: Evidence, base_url: str) -> str | None:
    """Link that opens the representative replay at the failure, or None if none is playable."""
    rep = ev.representative
    if rep is None or rep.expired or rep.replay_status not in ("ready", "pending"):
        return None
    url = f"{base_url.rstrip('/')}/sessions/{rep.session_id}"
    return url if rep.offset_ms is None else f"{url}?t={rep.offset_ms}"


def clip_url(ev: Evidence, base_url: str) -> str | None:
    """Link to the issue's rendered clip (MP4), or None unless one is ready."""
    if ev.clip is None or not ev.clip.ready:
        return None
    return f"{base_url.rstrip('/')}/issues/{ev.issue.id}/clip.mp4"


def clip_json(ev: Evidence, base: str | None) -> dict[str, Any] | None:
    """The `clip` object of `issues show --json` (null when no render was tried)."""
    clip = ev.clip
    if clip is None:
        return None
    url = clip_url(ev, base) if base else None
    return {
        "status": clip.status,
        "reason": clip.reason,
        "session_id": clip.session_id,
        "failure_id": clip.failure_id,
        "duration_ms": clip.duration_ms,
        "bytes": clip.video_bytes if clip.ready else None,
        "url": url,
        "poster_url": url[: -len(".mp4")] + ".png" if url else None,
    }


def summary_json(issue: IssueSummary) -> dict[str, Any]:
    """The fields an issue has in every JSON output (`issues list` rows, `issues show`)."""
    return {
        "id": issue.id,
        "site": {"id": issue.site_id, "name": issue.site_name},
        "kind": issue.kind,
        "status": issue.status,
        "regression": issue.regression,
        "title": issue.title,
        "culprit": issue.culprit,
        "counts": {
            "failures": issue.failure_count,
            "sessions": issue.session_count,
            "users": issue.user_count,
        },
        "first_seen": iso(issue.first_seen_at),
        "last_seen": iso(issue.last_seen_at),
    }


def issue_json(issue: IssueSummary, base_url: str) -> dict[str, Any]:
    """One row of `issues list --json` (and of GET /api/v1/issues): the summary plus its link."""
    return {**summary_json(issue), "url": f"{base_url.rstrip('/')}/issues/{issue.id}"}


def evidence_json(ev: Evidence, base_url: str | None = None) -> dict[str, Any]:
    """The stable `issues show --json` document (schema_version 1).

    Keys are always present (null when unknown); times are ISO 8601 UTC strings; offsets are
    milliseconds into the session's replay:

        schema_version: 1
        id, site: {id, name}, kind (error|network|console), status (candidate|open|resolved|
        ignored), regression (bool), title, message, culprit
        counts: {failures, sessions, users}, first_seen, last_seen
        stack: raw stack of the sample failure (null once purged)
        frames: [{function, path, raw_file, line, column, in_app, mapped, context_line,
                  pre_context, post_context}] (normalised, top first; `mapped` frames are
                  symbolicated: function, path, line and column are the original source's,
                  raw_file is still the script URL; context is null/[] without sourcesContent)
        releases: {first, last, resolved_in, sample, sample_has_source_maps}
        top: {browser|os|url|release: [{value, count}]} (up to 5 each, most frequent first)
        representative: {session_id, failure_id, offset_ms, ts, replay_status, expired,
                         context_ms, replay_url} | null
        steps: [{kind, label, offset_ms, seconds_before}] (oldest first, last one is newest)
        last_step_agreement: {label, matching_sessions, sessions_considered} | null
        confidence: {label (high|medium|low), reasons: [str]}
        sessions: [{session_id, user, browser, os, failures, offset_ms, last_seen,
                    replay_status, expired, replay_url}] (newest first, up to 50)
        history: [{at, action (promoted|resolved|ignored|reopened|regressed|merged|merged_into|
                   unmerged|unmerged_from), actor, detail (the other issue's id, or null)}]
        merged_into: id | null (this issue was merged into that one)
        merged: [{id, title}] (issues merged into this one)
        grouping_version: the grouping rules' version the issue was created under
        clip: {status (ready|failed|expired), reason, session_id, failure_id, duration_ms,
               bytes, url, poster_url} | null (null until the clips job tried the issue)
        daily: {start (YYYY-MM-DD, UTC), counts: [int] (14 days, oldest first, today last)}

    replay_url and clip url fields are null unless base_url is given.
    """
    issue = ev.issue
    rep = ev.representative
    base = base_url.rstrip("/") if base_url else None
    return {
        "schema_version": SCHEMA_VERSION,
        **summary_json(issue),
        "message": ev.message,
        "stack": ev.stack,
        "frames": [frame_json(f) for f in ev.frames],
        "releases": None
        if ev.releases is None
        else {
            "first": ev.releases.first,
            "last": ev.releases.last,
            "resolved_in": ev.releases.resolved_in,
            "sample": ev.releases.sample,
            "sample_has_source_maps": ev.releases.sample_has_maps,
        },
        "top": {
            facet: [{"value": v, "count": n} for v, n in ev.top.get(facet, [])] for facet in FACETS
        },
        "representative": None
        if rep is None
        else {
            "session_id": rep.session_id,
            "failure_id": rep.failure_id,
            "offset_ms": rep.offset_ms,
            "ts": iso(rep.ts),
            "replay_status": rep.replay_status,
            "expired": rep.expired,
            "context_ms": rep.context_ms,
            "replay_url": replay_url(ev, base) if base else None,
        },
        "steps": [
            {
                "kind": s.kind,
                "label": s.label,
                "offset_ms": s.offset_ms,
                "seconds_before": s.seconds_before,
            }
            for s in ev.steps
        ],
        "last_step_agreement": None
        if ev.last_step_agreement is None
        else {
            "label": ev.last_step_agreement.label,
            "matching_sessions": ev.last_step_agreement.matching_sessions,
            "sessions_considered": ev.last_step_agreement.sessions_considered,
        },
        "confidence": {"label": ev.confidence.label, "reasons": list(ev.confidence.reasons)},
        "sessions": [
            {
                "session_id": s.session_id,
                "user": s.user,
                "browser": s.browser,
                "os": s.os,
                "failures": s.failures,
                "offset_ms": s.offset_ms,
                "last_seen": iso(s.last_seen_at),
                "replay_status": s.replay_status,
                "expired": s.expired,
                "replay_url": _session_url(base, s) if base else None,
            }
            for s in ev.sessions
        ],
        "history": [
            {
                "at": iso(h.at),
                "action": h.action,
                "actor": h.actor,
                "release": h.release,
                "detail": h.detail,
            }
            for h in ev.history
        ],
        "merged_into": ev.merged_into,
        "merged": [{"id": i, "title": t} for i, t in ev.merged],
        "grouping_version": ev.grouping_version,
        "clip": clip_json(ev, base),
        "daily": {
            "start": (iso(ev.daily_first_day * DAY_MS) or "")[:10],
            "counts": list(ev.daily),
        },
    }


def frame_json(f: dict[str, Any]) -> dict[str, Any]:
    """One frame of `issues show --json` (every key present)."""
    out = {k: f.get(k) for k in ("function", "path", "raw_file", "line", "column", "in_app")}
    out["mapped"] = bool(f.get("mapped"))
    out["context_line"] = f.get("context_line")
    out["pre_context"] = list(f.get("pre_context") or [])
    out["post_context"] = list(f.get("post_context") or [])
    return out


def _session_url(base: str, s: AffectedSession) -> str | None:
    if s.expired or s.replay_status not in ("ready", "pending"):
        return None
    url = f"{base}/sessions/{s.session_id}"
    return url if s.offset_ms is None else f"{url}?t={s.offset_ms}"


# --- markdown --------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#~|&])")


def _md(text: str | None) -> str:
    """Client-supplied text as inert markdown: one line, no controls, markup escaped, no @."""
    flat = " ".join(strip_controls(text or "").split())
    return neutralise_mentions(_MD_SPECIAL.sub(r"\\\1", flat))


def _code(text: str | None) -> str:
    """Inline code span that survives backticks inside the text."""
    body = " ".join(strip_controls(text or "").split())
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or longest else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _block(text: str) -> str:
    text = strip_controls(text)
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def _when(ms: int) -> str:
    return (iso(ms) or "").replace("T", " ")[:16] + " UTC"


def frames_text(frames: list[dict[str, Any]]) -> str:
    """Frames as stack lines; symbolicated ones name the original file (and show its line)."""
    lines = []
    for f in frames:
        mapped = bool(f.get("mapped"))
        where = (f.get("path") if mapped else f.get("raw_file")) or f.get("path") or "?"
        if f.get("line") is not None:
            where += f":{f['line']}"
            if f.get("column") is not None:
                where += f":{f['column']}"
        vendor = "" if f.get("in_app") else "  [vendor]"
        lines.append(f"    at {f.get('function') or '<anonymous>'} ({where}){vendor}")
        if mapped and f.get("context_line") and f.get("in_app"):
            lines.append(f"        > {str(f['context_line']).strip()}")
    return "\n".join(lines)


def evidence_markdown(ev: Evidence, base_url: str) -> str:
    """A bug-tracker-ready report: summary, steps, replay link, stack and where it happens."""
    issue = ev.issue
    base = base_url.rstrip("/")
    status = issue.status + (" (regression)" if issue.regression else "")
    plural = "s" if issue.failure_count != 1 else ""
    out = [
        f"## {_md(issue.title)}",
        "",
        f"- **Status:** {status} · **Kind:** {issue.kind} · **Site:** {_md(issue.site_name)}",
        f"- **Seen:** {issue.failure_count} failure{plural} in {issue.session_count} "
        f"session{'s' if issue.session_count != 1 else ''} by {issue.user_count} "
        f"user{'s' if issue.user_count != 1 else ''}",
        f"- **First seen:** {_when(issue.first_seen_at)} · **Last seen:** "
        f"{_when(issue.last_seen_at)}",
    ]
    if issue.culprit:
        out.append(f"- **Culprit:** {_code(issue.culprit)}")
    rel = ev.releases
    if rel is not None and (rel.first or rel.last):
        out.append(f"- **Releases:** first {_code(rel.first)} · last {_code(rel.last)}")
    out.append(f"- **Confidence:** {ev.confidence.label} ({_md('; '.join(ev.confidence.reasons))})")
    out += ["", "### Steps before the failure", ""]
    if ev.steps:
        for n, step in enumerate(ev.steps, 1):
            verb = step.verb.capitalize()
            out.append(f"{n}. {verb} {_code(step.label)} ({step.seconds_before:g} s before)")
        out.append(f"{len(ev.steps) + 1}. **The failure happens:** {_md(issue.title)}")
    else:
        out.append("No recorded user actions before the failure.")
    agreement = ev.last_step_agreement
    if agreement is not None:
        out += [
            "",
            f"{agreement.matching_sessions} of {agreement.sessions_considered} affected "
            f"sessions with a replay share the last step {_code(agreement.label)}.",
        ]
    out += ["", "### Replay", ""]
    url = replay_url(ev, base)
    rep = ev.representative
    if url and rep is not None:
        at = f" ({replay_clock(rep.offset_ms)} in)" if rep.offset_ms is not None else ""
        out.append(
            f"[Watch the replay at the failure]({url}) — session {_code(rep.session_id)}{at}"
        )
    elif rep is not None:
        why = "expired" if rep.expired else f"replay {rep.replay_status}"
        out.append(f"No playable replay ({why}); session {_code(rep.session_id)}.")
    else:
        out.append("No session recorded.")
    video = clip_url(ev, base)
    if video and ev.clip is not None:
        seconds = (ev.clip.duration_ms or 0) / 1000
        out += ["", f"[Video of the moments before the failure]({video}) (MP4, {seconds:.0f} s)"]
    out += ["", "### Stack", ""]
    if any(f.get("mapped") for f in ev.frames):
        out += ["Source-mapped:", "", _block(frames_text(ev.frames)), ""]
    if ev.stack:
        out.append(_block(ev.stack))
    elif ev.frames:
        out += ["Raw stack purged; normalised frames:", "", _block(frames_text(ev.frames))]
    else:
        out.append(_md(ev.message) or "No stack trace.")
    out += ["", "### Where it happens", ""]
    names = {"browser": "Browsers", "os": "OS", "url": "URLs", "release": "Releases"}
    for facet in FACETS:
        values = ev.top.get(facet) or []
        shown = ", ".join(f"{_code(v)} ({n})" for v, n in values) if values else "unknown"
        out.append(f"- **{names[facet]}:** {shown}")
    out += ["", f"[Open issue {issue.id} in RetroSpec]({base}/issues/{issue.id})", ""]
    return "\n".join(out)
