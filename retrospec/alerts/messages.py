"""What an alert says: an IssueAlert (or a Digest of them) built from an issue's evidence.

Pure data; alerts/formats.py renders it for each channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retrospec.clock import iso
from retrospec.issues.evidence import Evidence
from retrospec.issues.queries import IssueSummary
from retrospec.issues.reports import clip_url, issue_json, replay_url

MAX_STEPS = 8
DIGEST_LINES = 40  # issues listed by name in a digest; the rest are counted


@dataclass(frozen=True, slots=True)
class Step:
    """One user action before the failure, as the message says it."""

    verb: str
    label: str
    seconds_before: float


@dataclass(frozen=True, slots=True)
class IssueAlert:
    """One alert about one issue (or a sample for `alerts test` when no issue exists)."""

    event: str  # promoted | regression | spike | test
    site_name: str
    title: str
    kind: str
    culprit: str | None
    failures: int
    sessions: int
    users: int
    first_seen: int | None
    last_seen: int | None
    first_release: str | None
    steps: tuple[Step, ...]
    issue_url: str
    replay_url: str | None
    issue: dict[str, Any] | None = None  # the `issues list --json` row; None for a sample
    spike_failures: int | None = None
    spike_minutes: float | None = None
    clip_url: str | None = None  # the rendered video of the moments before the failure

    @property
    def headline(self) -> str:
        """'New issue in shop', 'Regression in shop', 'Spike in shop: 240 failures in 60 min'."""
        if self.event == "regression":
            return f"Regression in {self.site_name}"
        if self.event == "spike":
            return (
                f"Spike in {self.site_name}: {self.spike_failures} failures in "
                f"{self.spike_minutes:g} min"
            )
        if self.event == "test":
            return f"Test alert from RetroSpec ({self.site_name})"
        return f"New issue in {self.site_name}"


@dataclass(frozen=True, slots=True)
class Digest:
    """Many alerts for one rule, sent as one message."""

    alerts: tuple[IssueAlert, ...]
    window_minutes: float
    dashboard_url: str
    total: int = 0  # alerts carried (some may no longer exist as issues)

    @property
    def headline(self) -> str:
        """'20 alerts in 5 minutes'."""
        n = self.total or len(self.alerts)
        return f"{n} alert{'s' if n != 1 else ''} in {self.window_minutes:g} minutes"


Notice = IssueAlert | Digest


def one_line(text: str | None, limit: int) -> str:
    """Whitespace collapsed (no header or markup injection through newlines), capped."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def issue_alert(
    ev: Evidence,
    event: str,
    base_url: str,
    *,
    first_release: str | None,
    spike_failures: int | None = None,
    spike_minutes: float | None = None,
) -> IssueAlert:
    """An alert from an issue's evidence; links are absolute (base_url is public_url)."""
    issue = ev.issue
    base = base_url.rstrip("/")
    steps = tuple(Step(s.verb, s.label, s.seconds_before) for s in ev.steps[-MAX_STEPS:])
    return IssueAlert(
        event=event,
        site_name=issue.site_name,
        title=issue.title,
        kind=issue.kind,
        culprit=issue.culprit,
        failures=issue.failure_count,
        sessions=issue.session_count,
        users=issue.user_count,
        first_seen=issue.first_seen_at,
        last_seen=issue.last_seen_at,
        first_release=first_release,
        steps=steps,
        issue_url=f"{base}/issues/{issue.id}",
        replay_url=replay_url(ev, base),
        clip_url=clip_url(ev, base),
        issue=issue_json(issue, base),
        spike_failures=spike_failures,
        spike_minutes=spike_minutes,
    )


def summary_alert(issue: IssueSummary, event: str, base_url: str) -> IssueAlert:
    """A short alert from an issue's summary alone (a digest lists many; no evidence needed)."""
    base = base_url.rstrip("/")
    return IssueAlert(
        event=event,
        site_name=issue.site_name,
        title=issue.title,
        kind=issue.kind,
        culprit=issue.culprit,
        failures=issue.failure_count,
        sessions=issue.session_count,
        users=issue.user_count,
        first_seen=issue.first_seen_at,
        last_seen=issue.last_seen_at,
        first_release=None,
        steps=(),
        issue_url=f"{base}/issues/{issue.id}",
        replay_url=None,
        issue=issue_json(issue, base),
    )


def sample_alert(site_name: str, base_url: str) -> IssueAlert:
    """What `alerts test` sends when there is no issue to show yet."""
    return IssueAlert(
        event="test",
        site_name=site_name,
        title="This is a test alert: RetroSpec can reach this channel",
        kind="error",
        culprit=None,
        failures=0,
        sessions=0,
        users=0,
        first_seen=None,
        last_seen=None,
        first_release=None,
        steps=(),
        issue_url=f"{base_url.rstrip('/')}/alerts",
        replay_url=None,
    )


def when(ms: int | None) -> str:
    """'2025-11-25 22:06 UTC' (or 'unknown')."""
    return (iso(ms) or "").replace("T", " ")[:16] + " UTC" if ms is not None else "unknown"


def step_line(n: int, step: Step) -> str:
    """'1. clicked button "Pay" (1.5 s before)'."""
    return f"{n}. {step.verb} {one_line(step.label, 200)} ({step.seconds_before:g} s before)"
