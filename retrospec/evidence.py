"""The evidence of an issue: representative replay, steps before the failure, confidence, reports.

Representative session: among the issue's sessions, one whose replay is playable (replay_status
ready, not expired) and contains the session's first failure of this issue (failure ts within
[replay_start_ts, replay_end_ts]), preferring the most replay before the failure (largest
offset). Fallbacks, in order: a ready or pending replay that does not (yet) contain the failure,
then any session (expired, no replay); the newest first. The newest 1,000 sessions are searched
first, all of them only if none of those is playable.

Steps before the failure: the representative session's replay markers (clicks, rage clicks,
inputs, navigations; never failures) at or before the failure, newest last, at most 8, with
runs of one repeated action collapsed (edits of one field; clicks on one element, shown as a rage
click when the replay job marked one). The "last step" is the newest click,
rage click or navigation; for each of the newest 200 affected sessions that has markers we take the
same last step before its first failure of this issue and count how many match (clicks by
element label, navigations by templated path).

Confidence (the rule is fixed so users can reason about it):
    agreement = at least 2 sessions share the last step AND they are at least half of the
                sessions with markers
    high   = sessions >= 3 AND users >= 2 AND agreement
    medium = sessions >= 2 AND (users >= 2 OR agreement)
    low    = anything else (one session, or one user without shared steps)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import aiosqlite
import msgspec

from retrospec.clock import iso
from retrospec.fingerprint import path_template
from retrospec.models import PAYLOAD_DECODER

if TYPE_CHECKING:
    from retrospec.issues import IssueSummary

FACETS = ("browser", "os", "url", "release")
TOP_N = 5
MAX_STEPS = 8
MAX_SESSIONS = 50
AGREEMENT_SESSIONS = 200
ACTION_KINDS = ("click", "rage_click", "navigation", "input")
LAST_STEP_KINDS = ("click", "rage_click", "navigation")
SCHEMA_VERSION = 1
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Representative:
    """The session whose replay best shows the failure."""

    session_id: str
    failure_id: int
    offset_ms: int | None  # failure offset in the replay; None without a replay start
    ts: int  # failure time (browser clock, epoch ms)
    replay_status: str
    expired: bool
    context_ms: int  # replay time before the failure; 0 when the replay does not contain it


@dataclass(frozen=True, slots=True)
class Step:
    """One user action before the failure."""

    kind: str  # click | rage_click | navigation | input
    label: str
    offset_ms: int
    seconds_before: float


@dataclass(frozen=True, slots=True)
class LastStepAgreement:
    """How many affected sessions did the same last thing before failing."""

    label: str
    matching_sessions: int
    sessions_considered: int


@dataclass(frozen=True, slots=True)
class Confidence:
    """high | medium | low, with the reasons behind it."""

    label: str
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class AffectedSession:
    """One session that hit the issue."""

    session_id: str
    user: str | None
    browser: str | None
    os: str | None
    failures: int
    offset_ms: int | None  # offset of its first failure of this issue in its replay
    last_seen_at: int
    replay_status: str
    expired: bool


class HistoryEntry(NamedTuple):
    """One lifecycle event."""

    at: int
    action: str
    actor: str | None


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything known about one issue."""

    issue: IssueSummary
    message: str | None
    stack: str | None  # raw stack of the sample failure; None once purged
    frames: list[dict[str, Any]]
    top: dict[str, list[tuple[str, int]]]
    representative: Representative | None
    steps: list[Step]
    last_step_agreement: LastStepAgreement | None
    confidence: Confidence
    sessions: list[AffectedSession]
    history: list[HistoryEntry]
    daily: list[int]
    daily_first_day: int = 0  # UTC day number (days since the epoch) of daily[0]


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return list(await conn.execute_fetchall(sql, params))


def _is_expired(status: str | None, expired_at: int | None) -> bool:
    return status == "expired" or expired_at is not None


def _offset(ts: int, start: int | None) -> int | None:
    return None if start is None else max(0, ts - start)


# Tier 0: a playable replay that contains the failure; 1: a replay that may still get there
# (ready but not yet extended past the failure, or pending); 2: anything else.
_REPRESENTATIVE = """
SELECT x.session_id, f.id, f.ts, s.replay_status, s.expired_at, s.replay_start_ts,
       CASE
         WHEN s.replay_status = 'ready' AND s.expired_at IS NULL
              AND f.ts BETWEEN s.replay_start_ts AND s.replay_end_ts THEN 0
         WHEN s.replay_status IN ('ready', 'pending') AND s.expired_at IS NULL THEN 1
         ELSE 2 END AS tier
FROM (SELECT session_id, first_failure_id, last_seen_at FROM cluster_sessions
      WHERE cluster_id = ? ORDER BY last_seen_at DESC, session_id DESC LIMIT ?) x
JOIN failures f ON f.id = x.first_failure_id
JOIN sessions s ON s.id = x.session_id
ORDER BY tier, CASE WHEN tier = 0 THEN f.ts - s.replay_start_ts END DESC,
         x.last_seen_at DESC, x.session_id DESC
LIMIT 1
"""
# A busy issue has many sessions: look at the newest first (replays expire oldest first) and
# search all of them only when none of those is playable.
RECENT_SESSIONS = 1000


async def _representative(
    conn: aiosqlite.Connection, cid: int, session_count: int
) -> Representative | None:
    rows = await _rows(conn, _REPRESENTATIVE, (cid, RECENT_SESSIONS))
    if rows and rows[0][6] != 0 and session_count > RECENT_SESSIONS:
        rows = await _rows(conn, _REPRESENTATIVE, (cid, -1)) or rows  # LIMIT -1: no limit
    if not rows:
        return None
    sid, fid, ts, status, expired_at, start, tier = rows[0]
    offset = _offset(int(ts), start)
    return Representative(
        session_id=str(sid),
        failure_id=int(fid),
        offset_ms=offset,
        ts=int(ts),
        replay_status=str(status),
        expired=_is_expired(status, expired_at),
        context_ms=int(offset or 0) if tier == 0 else 0,
    )


async def _steps(conn: aiosqlite.Connection, rep: Representative) -> list[Step]:
    marks = ",".join("?" * len(ACTION_KINDS))
    # Fetch more than shown: runs of one repeated action collapse into one step below.
    rows = await _rows(
        conn,
        f"SELECT kind, label, offset_ms, ts FROM replay_markers WHERE session_id = ? "
        f"AND ts <= ? AND kind IN ({marks}) ORDER BY ts DESC, id DESC LIMIT 100",
        (rep.session_id, rep.ts, *ACTION_KINDS),
    )
    steps: list[Step] = []
    for kind, label, offset_ms, ts in reversed(rows):
        step = Step(
            kind=str(kind),
            label=str(label or ""),
            offset_ms=int(offset_ms),
            seconds_before=round((rep.ts - int(ts)) / 1000, 1),
        )
        if steps and step_key(steps[-1].kind, steps[-1].label) == step_key(step.kind, step.label):
            # Repeats of one action (edits of one field, a burst of clicks on one button, which
            # the replay job also marks as a rage click) read as one step, at its newest time.
            rage = "rage_click" in (steps[-1].kind, step.kind)
            step = Step(
                "rage_click" if rage else step.kind, step.label, step.offset_ms, step.seconds_before
            )
            steps.pop()
        steps.append(step)
    return steps[-MAX_STEPS:]


def step_key(kind: str, label: str | None) -> tuple[str, str]:
    """What makes two last steps 'the same': element label for clicks, path for navigations."""
    text = " ".join((label or "").split())
    if kind == "navigation":
        host, path = path_template(text)
        return ("navigation", f"{host}{path}")
    if kind == "input":
        return ("input", text)
    return ("click", text)  # a rage click on the same element is the same action


# Bounded to the newest sessions, so a busy issue (or one whose sessions have no replay) costs
# at most AGREEMENT_SESSIONS index probes.
_LAST_STEPS = """
SELECT m.kind, m.label, x.session_id FROM (
  SELECT r.session_id,
    (SELECT m2.id FROM replay_markers m2
      WHERE m2.session_id = r.session_id AND m2.ts <= f.ts
        AND m2.kind IN ('click', 'rage_click', 'navigation')
      ORDER BY m2.ts DESC, m2.id DESC LIMIT 1) AS mid
  FROM (SELECT session_id, first_failure_id FROM cluster_sessions WHERE cluster_id = ?
        ORDER BY last_seen_at DESC, session_id DESC LIMIT ?) r
  JOIN failures f ON f.id = r.first_failure_id
  WHERE EXISTS (SELECT 1 FROM replay_markers m3 WHERE m3.session_id = r.session_id)
) x LEFT JOIN replay_markers m ON m.id = x.mid
"""


async def _agreement(
    conn: aiosqlite.Connection, cid: int, steps: list[Step]
) -> LastStepAgreement | None:
    rows = await _rows(conn, _LAST_STEPS, (cid, AGREEMENT_SESSIONS))
    if not rows:
        return None
    keys = [step_key(str(kind), label) if kind is not None else None for kind, label, _ in rows]
    labels = {k: str(label) for k, (_, label, _s) in zip(keys, rows, strict=True) if k}
    reference = next(
        (step_key(s.kind, s.label) for s in reversed(steps) if s.kind in LAST_STEP_KINDS), None
    )
    if reference is None:
        # The representative shows no click or navigation: report the most common last step.
        counts = Counter(k for k in keys if k is not None)
        if not counts:
            return None
        reference = counts.most_common(1)[0][0]
        label = labels[reference]
    else:
        label = next(s.label for s in reversed(steps) if s.kind in LAST_STEP_KINDS)
    return LastStepAgreement(
        label=label,
        matching_sessions=sum(1 for k in keys if k == reference),
        sessions_considered=len(rows),
    )


def confidence_for(sessions: int, users: int, agreement: LastStepAgreement | None) -> Confidence:
    """Apply the confidence rule (module docstring) and say why."""
    reasons = [f"seen in {sessions} session{'s' if sessions != 1 else ''}"]
    if users >= 2:
        reasons.append(f"by {users} different users")
    elif users == 1:
        reasons.append("all by one user")
    else:
        reasons.append("users unknown")
    agrees = False
    if agreement is None:
        reasons.append("no replay markers to compare the steps before the failure")
    else:
        m, n = agreement.matching_sessions, agreement.sessions_considered
        agrees = m >= 2 and 2 * m >= n
        share = f"{m} of {n} sessions with recorded steps share the last step {agreement.label}"
        reasons.append(share if agrees else f"only {share}")
    if sessions >= 3 and users >= 2 and agrees:
        label = "high"
    elif sessions >= 2 and (users >= 2 or agrees):
        label = "medium"
    else:
        label = "low"
    return Confidence(label=label, reasons=reasons)


async def _sessions(conn: aiosqlite.Connection, cid: int) -> list[AffectedSession]:
    rows = await _rows(
        conn,
        "SELECT cs.session_id, coalesce(s.user_email, s.user_name, s.user_id), s.browser, s.os, "
        "cs.failures, f.ts, s.replay_start_ts, cs.last_seen_at, s.replay_status, s.expired_at "
        "FROM cluster_sessions cs JOIN sessions s ON s.id = cs.session_id "
        "JOIN failures f ON f.id = cs.first_failure_id WHERE cs.cluster_id = ? "
        "ORDER BY cs.last_seen_at DESC, cs.session_id DESC LIMIT ?",
        (cid, MAX_SESSIONS),
    )
    return [
        AffectedSession(
            session_id=str(r[0]),
            user=r[1],
            browser=r[2],
            os=r[3],
            failures=int(r[4]),
            offset_ms=_offset(int(r[5]), r[6]),
            last_seen_at=int(r[7]),
            replay_status=str(r[8]),
            expired=_is_expired(r[8], r[9]),
        )
        for r in rows
    ]


async def gather_evidence(
    conn: aiosqlite.Connection, issue: IssueSummary, daily: list[int], daily_first_day: int
) -> Evidence:
    """Collect the evidence of a known issue (used by issues.get_evidence)."""
    cid = issue.id
    head = await _rows(
        conn,
        "SELECT coalesce(cf.frames, c.frames), f.message, f.payload FROM clusters c "
        "LEFT JOIN cluster_frames cf ON cf.cluster_id = c.id "
        "LEFT JOIN failures f ON f.id = c.sample_failure_id WHERE c.id = ?",
        (cid,),
    )
    frames_text, message, payload = head[0] if head else (None, None, None)
    frames: list[dict[str, Any]] = msgspec.json.decode(frames_text) if frames_text else []
    stack = None
    if payload:
        try:
            stack = PAYLOAD_DECODER.decode(payload).stack
        except msgspec.DecodeError:
            stack = None
    top: dict[str, list[tuple[str, int]]] = {facet: [] for facet in FACETS}
    for facet, value, count in await _rows(
        conn,
        "SELECT facet, value, count FROM (SELECT facet, value, count, row_number() OVER "
        "(PARTITION BY facet ORDER BY count DESC, value) AS n FROM cluster_facets "
        "WHERE cluster_id = ?) WHERE n <= ? ORDER BY facet, n",
        (cid, TOP_N),
    ):
        top.setdefault(str(facet), []).append((str(value), int(count)))
    rep = await _representative(conn, cid, issue.session_count)
    steps = await _steps(conn, rep) if rep is not None else []
    agreement = await _agreement(conn, cid, steps)
    history = [
        HistoryEntry(int(at), str(action), actor)
        for at, action, actor in await _rows(
            conn,
            "SELECT at, action, actor FROM issue_events WHERE cluster_id = ? ORDER BY at, id",
            (cid,),
        )
    ]
    return Evidence(
        issue=issue,
        message=message,
        stack=stack,
        frames=frames,
        top=top,
        representative=rep,
        steps=steps,
        last_step_agreement=agreement,
        confidence=confidence_for(issue.session_count, issue.user_count, agreement),
        sessions=await _sessions(conn, cid),
        history=history,
        daily=daily,
        daily_first_day=daily_first_day,
    )


def replay_url(ev: Evidence, base_url: str) -> str | None:
    """Link that opens the representative replay at the failure, or None if none is playable."""
    rep = ev.representative
    if rep is None or rep.expired or rep.replay_status not in ("ready", "pending"):
        return None
    url = f"{base_url.rstrip('/')}/sessions/{rep.session_id}"
    return url if rep.offset_ms is None else f"{url}?t={rep.offset_ms}"


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


def evidence_json(ev: Evidence, base_url: str | None = None) -> dict[str, Any]:
    """The stable `issues show --json` document (schema_version 1).

    Keys are always present (null when unknown); times are ISO 8601 UTC strings; offsets are
    milliseconds into the session's replay:

        schema_version: 1
        id, site: {id, name}, kind (error|network|console), status (candidate|open|resolved|
        ignored), regression (bool), title, message, culprit
        counts: {failures, sessions, users}, first_seen, last_seen
        stack: raw stack of the sample failure (null once purged)
        frames: [{function, path, raw_file, line, column, in_app}] (normalised, top first)
        top: {browser|os|url|release: [{value, count}]} (up to 5 each, most frequent first)
        representative: {session_id, failure_id, offset_ms, ts, replay_status, expired,
                         context_ms, replay_url} | null
        steps: [{kind, label, offset_ms, seconds_before}] (oldest first, last one is newest)
        last_step_agreement: {label, matching_sessions, sessions_considered} | null
        confidence: {label (high|medium|low), reasons: [str]}
        sessions: [{session_id, user, browser, os, failures, offset_ms, last_seen,
                    replay_status, expired, replay_url}] (newest first, up to 50)
        history: [{at, action (promoted|resolved|ignored|reopened|regressed), actor}]
        daily: {start (YYYY-MM-DD, UTC), counts: [int] (14 days, oldest first, today last)}

    replay_url fields are null unless base_url is given.
    """
    issue = ev.issue
    rep = ev.representative
    base = base_url.rstrip("/") if base_url else None
    return {
        "schema_version": SCHEMA_VERSION,
        **summary_json(issue),
        "message": ev.message,
        "stack": ev.stack,
        "frames": [
            {k: f.get(k) for k in ("function", "path", "raw_file", "line", "column", "in_app")}
            for f in ev.frames
        ],
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
        "history": [{"at": iso(h.at), "action": h.action, "actor": h.actor} for h in ev.history],
        "daily": {
            "start": (iso(ev.daily_first_day * DAY_MS) or "")[:10],
            "counts": list(ev.daily),
        },
    }


def _session_url(base: str, s: AffectedSession) -> str | None:
    if s.expired or s.replay_status not in ("ready", "pending"):
        return None
    url = f"{base}/sessions/{s.session_id}"
    return url if s.offset_ms is None else f"{url}?t={s.offset_ms}"


# --- markdown --------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#~|&])")
_STEP_VERBS = {
    "click": "Clicked",
    "rage_click": "Rage-clicked",
    "navigation": "Navigated to",
    "input": "Typed into",
}


def _md(text: str | None) -> str:
    """Client-supplied text as inert markdown (one line, markup escaped)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join((text or "").split()))


def _code(text: str | None) -> str:
    """Inline code span that survives backticks inside the text."""
    body = " ".join((text or "").split())
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or longest else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _block(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def _when(ms: int) -> str:
    return (iso(ms) or "").replace("T", " ")[:16] + " UTC"


def _clock(ms: int) -> str:
    seconds = max(0, ms) // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def _frames_text(frames: list[dict[str, Any]]) -> str:
    lines = []
    for f in frames:
        where = f.get("raw_file") or f.get("path") or "?"
        if f.get("line") is not None:
            where += f":{f['line']}"
            if f.get("column") is not None:
                where += f":{f['column']}"
        vendor = "" if f.get("in_app") else "  [vendor]"
        lines.append(f"    at {f.get('function') or '<anonymous>'} ({where}){vendor}")
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
    out.append(f"- **Confidence:** {ev.confidence.label} ({_md('; '.join(ev.confidence.reasons))})")
    out += ["", "### Steps before the failure", ""]
    if ev.steps:
        for n, step in enumerate(ev.steps, 1):
            verb = _STEP_VERBS.get(step.kind, step.kind)
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
        at = f" ({_clock(rep.offset_ms)} in)" if rep.offset_ms is not None else ""
        out.append(
            f"[Watch the replay at the failure]({url}) — session {_code(rep.session_id)}{at}"
        )
    elif rep is not None:
        why = "expired" if rep.expired else f"replay {rep.replay_status}"
        out.append(f"No playable replay ({why}); session {_code(rep.session_id)}.")
    else:
        out.append("No session recorded.")
    out += ["", "### Stack", ""]
    if ev.stack:
        out.append(_block(ev.stack))
    elif ev.frames:
        out += ["Raw stack purged; normalised frames:", "", _block(_frames_text(ev.frames))]
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
