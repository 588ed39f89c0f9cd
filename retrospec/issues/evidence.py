"""The evidence of an issue: representative replay, steps before the failure, confidence, reports.

Representative session: the replay that shows the failure with enough context at the lowest
cost to open, not the longest one. Among the issue's sessions whose replay is playable
(replay_status ready, not expired) and contains the session's first failure of this issue
(failure ts within [replay_start_ts, replay_end_ts]) with at least CONTEXT_MS of replay before
it, the one whose player fetches the fewest stored bytes to show the failure (the segments from
the checkpoint before it; the whole artifact when it has no segment index), ties to the newest.
The cheapest CANDIDATES by artifact size are costed exactly. Fallbacks, in order: a playable
replay with less context (the most context first), a ready or pending replay that does not (yet)
contain the failure, then any session (expired, no replay); the newest first. The newest 1,000
sessions are searched first, all of them only if none of those is playable.

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

import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec

from retrospec.clock import day_of
from retrospec.clock import now_ms as _now_ms
from retrospec.ingest.envelope import decode_payload
from retrospec.issues.fingerprint import path_template
from retrospec.issues.queries import IssueSummary, daily_counts, get_issue
from retrospec.replay import artifact
from retrospec.sourcemaps.store import has_maps
from retrospec.video.store import Clip, get_clip

FACETS = ("browser", "os", "url", "release")
TOP_N = 5
MAX_STEPS = 8
MAX_SESSIONS = 50
AGREEMENT_SESSIONS = 200
STEP_VERBS = {
    "click": "clicked",
    "rage_click": "rage-clicked",
    "navigation": "opened",
    "input": "typed into",
}
EVIDENCE_DAYS = 14  # days of daily counts on the issue page
ACTION_KINDS = ("click", "rage_click", "navigation", "input")
LAST_STEP_KINDS = ("click", "rage_click", "navigation")
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

    @property
    def verb(self) -> str:
        """How reports say it: 'clicked', 'opened' (capitalise at the start of a line)."""
        return STEP_VERBS.get(self.kind, self.kind)


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
    release: str | None = None  # resolved in the release after it / regressed in it
    detail: str | None = None  # merges: the other issue's id


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
    releases: ReleaseFacts | None = None
    merged_into: int | None = None  # set while this cluster is merged into another
    merged: tuple[tuple[int, str], ...] = ()  # (id, title) of clusters merged into this one
    grouping_version: int = 1
    clip: Clip | None = None  # the rendered replay clip (retrospec/video/), if one was tried


@dataclass(frozen=True, slots=True)
class ReleaseFacts:
    """An issue's releases, and whether the sample's release has source maps."""

    first: str | None
    last: str | None
    resolved_in: str | None  # set by "resolve in next release"
    sample: str | None  # release of the failure whose stack is shown
    sample_has_maps: bool


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return list(conn.execute(sql, params).fetchall())


def _is_expired(status: str | None, expired_at: int | None) -> bool:
    return status == "expired" or expired_at is not None


def _offset(ts: int, start: int | None) -> int | None:
    return None if start is None else max(0, ts - start)


# Tier 0: a playable replay that contains the failure with CONTEXT_MS before it; 1: one with
# less context; 2: a replay that may still get there (ready but not yet extended past the
# failure, or pending); 3: anything else. (The tier is computed in an inner query: PostgreSQL
# cannot use an output alias inside an ORDER BY expression.)
NO_LIMIT = 1 << 62  # LIMIT -1 is SQLite only
_REPRESENTATIVE = """
SELECT session_id, failure_id, ts, replay_status, expired_at, replay_start_ts, tier,
       replay_bytes, replay_segments FROM (
  SELECT x.session_id, f.id AS failure_id, f.ts, s.replay_status, s.expired_at,
         s.replay_start_ts, x.last_seen_at, s.replay_bytes, s.replay_segments,
         CASE
           WHEN s.replay_status = 'ready' AND s.expired_at IS NULL
                AND f.ts BETWEEN s.replay_start_ts AND s.replay_end_ts
                AND f.ts - s.replay_start_ts >= ? THEN 0
           WHEN s.replay_status = 'ready' AND s.expired_at IS NULL
                AND f.ts BETWEEN s.replay_start_ts AND s.replay_end_ts THEN 1
           WHEN s.replay_status IN ('ready', 'pending') AND s.expired_at IS NULL THEN 2
           ELSE 3 END AS tier
  FROM (SELECT session_id, first_failure_id, last_seen_at FROM cluster_sessions
        WHERE cluster_id = ? ORDER BY last_seen_at DESC, session_id DESC LIMIT ?) x
  JOIN failures f ON f.id = x.first_failure_id
  JOIN sessions s ON s.id = x.session_id
) ranked
ORDER BY tier, CASE WHEN tier = 0 THEN replay_bytes END,
         CASE WHEN tier = 1 THEN ts - replay_start_ts END DESC,
         last_seen_at DESC, session_id DESC
LIMIT ?
"""
# A busy issue has many sessions: look at the newest first (replays expire oldest first) and
# search all of them only when none of those is playable.
RECENT_SESSIONS = 1000
CONTEXT_MS = 20_000  # replay before the failure that shows how the user got there
CANDIDATES = 50  # tier-0 replays (smallest artifacts first) whose open cost is computed


def _cost(row: Any) -> int:
    segments = artifact.parse_index(row[8])
    return artifact.open_cost(segments, int(row[7] or 0), int(row[2]))


def _representative(
    conn: sqlite3.Connection, cid: int, session_count: int
) -> Representative | None:
    rows = _rows(conn, _REPRESENTATIVE, (CONTEXT_MS, cid, RECENT_SESSIONS, CANDIDATES))
    if rows and rows[0][6] > 1 and session_count > RECENT_SESSIONS:
        rows = _rows(conn, _REPRESENTATIVE, (CONTEXT_MS, cid, NO_LIMIT, CANDIDATES)) or rows
    if not rows:
        return None
    best = rows[0]
    if best[6] == 0:
        # min() keeps the first of equal costs: the SQL order (newest) breaks ties.
        best = min((r for r in rows if r[6] == 0), key=_cost)
    sid, fid, ts, status, expired_at, start, tier = best[:7]
    offset = _offset(int(ts), start)
    return Representative(
        session_id=str(sid),
        failure_id=int(fid),
        offset_ms=offset,
        ts=int(ts),
        replay_status=str(status),
        expired=_is_expired(status, expired_at),
        context_ms=int(offset or 0) if tier <= 1 else 0,
    )


def _steps(conn: sqlite3.Connection, rep: Representative) -> list[Step]:
    marks = ",".join("?" * len(ACTION_KINDS))
    # Fetch more than shown: runs of one repeated action collapse into one step below.
    rows = _rows(
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


def _agreement(conn: sqlite3.Connection, cid: int, steps: list[Step]) -> LastStepAgreement | None:
    rows = _rows(conn, _LAST_STEPS, (cid, AGREEMENT_SESSIONS))
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


def _sessions(conn: sqlite3.Connection, cid: int) -> list[AffectedSession]:
    rows = _rows(
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


def gather_evidence(
    conn: sqlite3.Connection, issue: IssueSummary, daily: list[int], daily_first_day: int
) -> Evidence:
    """Collect the evidence of a known issue (used by get_evidence)."""
    cid = issue.id
    head = _rows(
        conn,
        "SELECT coalesce(cf.frames, c.frames), f.message, f.payload, c.first_release, "
        "c.last_release, c.resolved_in_release, f.release FROM clusters c "
        "LEFT JOIN cluster_frames cf ON cf.cluster_id = c.id "
        "LEFT JOIN failures f ON f.id = c.sample_failure_id WHERE c.id = ?",
        (cid,),
    )
    frames_text, message, payload, first_rel, last_rel, in_rel, sample_rel = (
        head[0] if head else (None,) * 7
    )
    releases = ReleaseFacts(
        first_rel, last_rel, in_rel, sample_rel, has_maps(conn, issue.site_id, sample_rel)
    )
    frames: list[dict[str, Any]] = msgspec.json.decode(frames_text) if frames_text else []
    stack = None
    if payload:
        try:
            stack = decode_payload(payload).stack
        except msgspec.DecodeError:
            stack = None
    top: dict[str, list[tuple[str, int]]] = {facet: [] for facet in FACETS}
    for facet, value, count in _rows(
        conn,
        "SELECT facet, value, count FROM (SELECT facet, value, count, row_number() OVER "
        "(PARTITION BY facet ORDER BY count DESC, value) AS n FROM cluster_facets "
        "WHERE cluster_id = ?) WHERE n <= ? ORDER BY facet, n",
        (cid, TOP_N),
    ):
        top.setdefault(str(facet), []).append((str(value), int(count)))
    rep = _representative(conn, cid, issue.session_count)
    steps = _steps(conn, rep) if rep is not None else []
    agreement = _agreement(conn, cid, steps)
    history = [
        HistoryEntry(int(at), str(action), actor, release, detail)
        for at, action, actor, release, detail in _rows(
            conn,
            "SELECT at, action, actor, release, detail FROM issue_events WHERE cluster_id = ? "
            "ORDER BY at, id",
            (cid,),
        )
    ]
    [(merged_into, version)] = _rows(
        conn, "SELECT merged_into, grouping_version FROM clusters WHERE id = ?", (cid,)
    )
    merged = tuple(
        (int(i), str(t))
        for i, t in _rows(
            conn, "SELECT id, title FROM clusters WHERE merged_into = ? ORDER BY id", (cid,)
        )
    )
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
        sessions=_sessions(conn, cid),
        history=history,
        daily=daily,
        daily_first_day=daily_first_day,
        releases=releases,
        merged_into=None if merged_into is None else int(merged_into),
        merged=merged,
        grouping_version=int(version),
        clip=get_clip(conn, cid),
    )


def get_evidence(conn: sqlite3.Connection, issue_id: int, *, now_ms: int | None = None) -> Evidence:
    """Everything the issue page, `issues show` and the markdown report need (NotFound)."""
    issue = get_issue(conn, issue_id)
    now = _now_ms() if now_ms is None else now_ms
    daily = (daily_counts(conn, [issue.id], days=EVIDENCE_DAYS, now_ms=now))[issue.id]
    return gather_evidence(conn, issue, daily, day_of(now) - EVIDENCE_DAYS + 1)


def first_release(conn: sqlite3.Connection, issue_id: int) -> str | None:
    """The release of the issue's oldest failure that carried one (None when none did)."""
    rows = _rows(
        conn,
        "SELECT release FROM failures WHERE cluster_id = ? AND release IS NOT NULL "
        "ORDER BY received_at, id LIMIT 1",
        (int(issue_id),),
    )
    return str(rows[0][0]) if rows else None
