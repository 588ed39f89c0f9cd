"""From a parsed Sentry envelope to what the pipeline stores: the pure adapter.

Sessions: a replay is the session `sr-<replay_id>` (segment N is its chunk N, so a resent segment
is stored once). An error joins its replay's session when it names one (tags.replayId, the
envelope's trace.replay_id) or when a replay segment listed it in error_ids; otherwise it belongs
to its page load, `st-<trace_id>` (the browser SDK keeps one trace per page load), or, with no
trace either, to itself, `se-<event_id>`. An error's chunk number is derived from its event id,
above every segment id, so a resent event is stored once too.

Items RetroSpec does not store (session, client_report, transaction, span, attachment, unknown
types) are counted by type and never fail the envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from retrospec.ingest.envelope import Envelope
from retrospec.ingest.sentry.envelope import Parsed
from retrospec.ingest.sentry.events import SentryError, decode_event, norm_id, read_event
from retrospec.ingest.sentry.replays import (
    MAX_SEGMENT_ID,
    SentryReplay,
    read_replay_event,
)

# Item types whose payload the adapter reads; every other type is only counted.
KEPT_TYPES = frozenset({"event", "replay_event", "replay_recording"})
# Counted under their own name; anything else (a client's invention) as "other".
COUNTED_TYPES = frozenset(
    {
        "event", "transaction", "session", "sessions", "client_report", "span", "attachment",
        "user_report", "feedback", "check_in", "profile", "profile_chunk", "statsd",
        "metric_buckets", "log", "otel_log", "replay_event", "replay_recording", "replay_video",
        "security", "raw_security", "nel", "trace_metric",
    }
)  # fmt: skip
EVENT_SEQ_BASE = MAX_SEGMENT_ID + 1
EVENT_SEQ_SPAN = 9_000_000  # ingest.envelope allows sequence numbers up to 10,000,000


def replay_session_id(replay_id: str) -> str:
    """The session a Sentry replay is stored as."""
    return f"sr-{replay_id}"


def event_seq(event_id: str) -> int:
    """An error's chunk number: derived from its event id, above every replay segment id."""
    return EVENT_SEQ_BASE + int(event_id[:15], 16) % EVENT_SEQ_SPAN


def counted_type(item_type: str) -> str:
    """The name an item type is counted under (a bounded set: client strings become "other")."""
    name = item_type.strip().lower()
    return name if name in COUNTED_TYPES else "other"


@dataclass(slots=True)
class Plan:
    """What one envelope asks for: errors, at most one replay segment, and counts."""

    header: dict[str, Any]
    errors: list[SentryError] = field(default_factory=list)
    replay: SentryReplay | None = None
    recording: bytes | None = None  # the replay_recording payload, not yet decompressed
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def response_id(self) -> str | None:
        """The id the answer names: the envelope's event_id, else the first error's or replay's."""
        found = norm_id(self.header.get("event_id"))
        if found:
            return found
        if self.errors:
            return self.errors[0].event_id
        return self.replay.replay_id if self.replay else None

    def count(self, item_type: str, n: int = 1) -> None:
        """Count an item that is accepted but not stored."""
        name = counted_type(item_type)
        self.counts[name] = self.counts.get(name, 0) + n


def plan_envelope(parsed: Parsed, *, user_agent: str | None, received_at: int) -> Plan:
    """Read the items of an envelope; only malformed items that matter raise (400)."""
    plan = Plan(parsed.header)
    replay_event: bytes | None = None
    has_replay_event = False
    for item in parsed.items:
        kind = item.type
        if kind == "event" and item.payload is not None:
            _add_event(plan, item.payload, user_agent=user_agent, received_at=received_at)
        elif kind == "replay_event" and not has_replay_event:
            has_replay_event = True
            replay_event = item.payload
        elif kind == "replay_recording" and plan.recording is None and item.payload is not None:
            plan.recording = item.payload
        else:
            plan.count(kind)
    if plan.recording is not None:
        plan.replay = read_replay_event(replay_event, parsed.header, user_agent=user_agent)
    elif has_replay_event:
        plan.count("replay_event")  # segment metadata without its recording: nothing to play
    return plan


def plan_store(body: bytes, *, user_agent: str | None, received_at: int) -> Plan:
    """The legacy /store/ endpoint: the body is one event."""
    plan = Plan({})
    _add_event(plan, body, user_agent=user_agent, received_at=received_at)
    return plan


def _add_event(plan: Plan, payload: bytes, *, user_agent: str | None, received_at: int) -> None:
    obj = decode_event(payload)
    if obj.get("type") == "transaction":  # old SDKs sent transactions as events
        plan.count("transaction")
        return
    plan.errors.append(
        read_event(obj, payload, plan.header, user_agent=user_agent, received_at=received_at)
    )


def error_session(error: SentryError, linked: str | None = None) -> tuple[str, bool]:
    """(session id, whether it is a replay's session) for an error; linked from error_ids."""
    if error.replay_id:
        return replay_session_id(error.replay_id), True
    if linked:
        return linked, True
    if error.trace_id:
        return f"st-{error.trace_id}", False
    return f"se-{error.event_id}", False


def error_envelope(error: SentryError, session_id: str, *, steps: bool) -> Envelope:
    """The ingest batch for one error; `steps` adds its breadcrumbs as step events."""
    events = msgspec.Raw()
    if steps and error.steps:
        events = msgspec.Raw(b"[" + b",".join(error.steps) + b"]")
    meta = msgspec.structs.replace(error.meta, id=session_id)
    return Envelope(
        session=meta, seq=event_seq(error.event_id), events=events, failures=[error.failure]
    )
