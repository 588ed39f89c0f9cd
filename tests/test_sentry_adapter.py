"""The pure Sentry adapter: events to failures, replay segments to chunks, ids and sessions."""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgspec
import pytest

from retrospec.errors import BadRequest, PayloadTooLarge
from retrospec.ids import is_session_id
from retrospec.ingest.envelope import STEP_TAG
from retrospec.ingest.prepare import decode_envelope
from retrospec.ingest.sentry.adapter import (
    EVENT_SEQ_BASE,
    counted_type,
    error_envelope,
    error_session,
    event_seq,
    plan_envelope,
)
from retrospec.ingest.sentry.envelope import parse
from retrospec.ingest.sentry.events import chrome_stack, millis, read_event
from retrospec.ingest.sentry.replays import MAX_SEGMENT_ID, normalise, read_recording
from retrospec.issues.fingerprint import FailureInput, fingerprint
from retrospec.issues.stackframes import parse_stack
from tests.support.sentry_fixtures import Captured, captured, mechanism, pick

KEEP = frozenset({"event", "replay_event", "replay_recording"})


def read(c: Captured) -> Any:
    parsed = parse(c.body, KEEP, max_item=1 << 24)
    return plan_envelope(parsed, user_agent="UA from the request", received_at=1)


def test_each_recorded_event_maps_to_its_kind() -> None:
    expected = {
        "auto.browser.global_handlers.onerror": "error",
        "auto.browser.global_handlers.onunhandledrejection": "unhandledrejection",
        "auto.browser.browserapierrors.addEventListener": "error",
        "generic": "custom",  # captureMessage (and captureException)
    }
    seen = set()
    for c in captured():
        if "event" not in c.types:
            continue
        (error,) = read(c).errors
        assert error.failure.kind == expected[mechanism(c)], c.name
        seen.add(mechanism(c))
    assert seen == set(expected)


def test_a_message_event_groups_by_its_message_not_the_sdks_stack() -> None:
    c = pick("event", lambda c: "message" in c.json_item("event"))
    (error,) = read(c).errors
    f = error.failure
    assert (f.kind, f.type, f.message, f.stack) == ("custom", None, "cart is empty", None)
    assert f.tags and f.tags["level"] == "warning"
    assert fingerprint(FailureInput(kind="custom", message=f.message)).basis == "message"


def test_the_stack_reads_like_v8s_with_the_sdk_wrapper_not_in_app() -> None:
    c = pick("event", lambda c: mechanism(c).endswith("addEventListener"))
    (error,) = read(c).errors
    frames = parse_stack(error.failure.stack)
    names = [f.function for f in frames]
    assert names[:3] == ["computeCartTotal", "checkout", "onCheckoutClick"]
    wrapper = frames[-1]  # the SDK's wrapper called the handler: outermost frame
    assert wrapper.path == "/sentry.bundle.js" and not wrapper.in_app
    assert all(f.in_app for f in frames[:-1])
    assert error.failure.filename and error.failure.filename.endswith("/app.js")
    assert error.failure.lineno == 1 or error.failure.lineno


def test_chrome_stack_renders_frames_crash_first() -> None:
    frames = [
        {"filename": "https://s.example/a.js", "function": "?", "lineno": 1, "colno": 2},
        {"filename": "https://s.example/a.js", "function": "outer", "lineno": 3},
        {"function": "native"},
        {"filename": "https://s.example/b.js", "function": "inner\nfn", "lineno": 5, "colno": 6},
    ]
    assert chrome_stack("TypeError", "bad\nvalue", frames) == (
        "TypeError: bad value\n"
        "    at inner fn (https://s.example/b.js:5:6)\n"
        "    at native (<anonymous>)\n"
        "    at outer (https://s.example/a.js:3)\n"
        "    at https://s.example/a.js:1:2"
    )
    assert chrome_stack("E", "v", []) is None


def test_breadcrumbs_become_steps_only_before_the_failure() -> None:
    event = {
        "event_id": "a" * 32,
        "timestamp": 1000.0,
        "exception": {"values": [{"type": "E", "value": "v"}]},
        "breadcrumbs": {
            "values": [
                {"timestamp": 990.0, "category": "ui.click", "message": "body > form > button#pay"},
                {"timestamp": 991.0, "category": "console", "message": "hi"},
                {"timestamp": 992.5, "category": "ui.input", "message": "body > input#email"},
                {
                    "timestamp": 993.0,
                    "category": "navigation",
                    "data": {"from": "https://s.example/a?x=1", "to": "/cart"},
                },
                {"timestamp": 1001.0, "category": "ui.click", "message": "button#late"},
            ]
        },
    }
    error = read_event(event, b"{}", {}, user_agent=None, received_at=5)
    steps = [json.loads(s) for s in error.steps]
    assert [(s["timestamp"], s["data"]["payload"]) for s in steps] == [
        (990000, {"kind": "click", "label": "button#pay"}),
        (992500, {"kind": "input", "label": "input#email"}),
        (993000, {"kind": "navigation", "label": "https://s.example/cart"}),
    ]
    assert {s["data"]["tag"] for s in steps} == {STEP_TAG}


def test_sessions_and_sequence_numbers() -> None:
    for c in captured():
        if "event" not in c.types:
            continue
        (error,) = read(c).errors
        session, in_replay = error_session(error)
        assert is_session_id(session)
        assert in_replay == bool(error.replay_id)
        env = error_envelope(error, session, steps=not in_replay)
        assert EVENT_SEQ_BASE <= env.seq <= 10_000_000
        # What the adapter builds passes our own ingest validation unchanged.
        if not len(env.events):  # an empty Raw encodes as nothing at all
            env = msgspec.structs.replace(env, events=msgspec.Raw(b"null"))
        again = decode_envelope(msgspec.json.encode(env))
        assert again.failures[0].kind == error.failure.kind
        assert again.session.id == session
    assert event_seq("f" * 32) <= 10_000_000 and event_seq("0" * 32) == EVENT_SEQ_BASE
    assert error_session(read(pick("event")).errors[0], "sr-" + "b" * 32)[1]


def test_timestamps_and_item_type_names() -> None:
    assert millis(1796070909.199, 0) == 1796070909199
    assert millis(1796070909199, 0) == 1796070909199
    assert millis("2026-11-30T20:35:09.217Z", 0) == 1796070909217
    assert millis("yesterday", 7) == 7 and millis(None, 7) == 7 and millis(-5, 7) == 0
    assert counted_type("client_report") == "client_report"
    assert counted_type("'; DROP TABLE x") == "other"


def test_recordings_are_normalised_for_any_player() -> None:
    raw = [
        {"type": 4, "data": {"href": "https://s.example/"}, "timestamp": 1796070965561},
        {"type": 2, "data": {"node": {}}, "timestamp": 1796070965570},
        {"type": 5, "timestamp": 1796070965562, "data": {"tag": "options", "payload": {}}},
        {"type": 5, "timestamp": 1796070966.1, "data": {"tag": "performanceSpan", "payload": {
            "op": "navigation.push", "description": "/cart", "startTimestamp": 1796070966.1}}},
        {"type": 5, "timestamp": 1796070964.0, "data": {"tag": "performanceSpan", "payload": {
            "op": "resource.fetch", "description": "/api"}}},
        {"type": 3, "data": {"source": 1}, "timestamp": 1796070966000},
        None,
        {"type": 5, "timestamp": 1796070965600, "data": {"tag": "breadcrumb", "payload": {}}},
    ]  # fmt: skip
    events, kept, dropped = normalise(json.dumps(raw).encode())
    out = json.loads(events)
    assert (kept, dropped) == (5, 3)
    assert [e["timestamp"] for e in out] == [
        1796070965561, 1796070965570, 1796070965600, 1796070966000, 1796070966100
    ]  # fmt: skip
    assert out[-1]["data"] == {"tag": "navigation", "payload": {"to": "/cart"}}
    payload = json.dumps(raw[:2]).encode()
    for body in (payload, zlib.compress(payload)):
        rec = read_recording(b'{"segment_id":3}\n' + body, 10_000)
        assert (rec.segment_id, rec.count) == (3, 2)
    with pytest.raises(PayloadTooLarge):
        read_recording(b'{"segment_id":3}\n' + zlib.compress(b" " * 20_000), 10_000)
    for bad in (
        b"no header line",
        b'{"segment_id":-1}\n[]',
        b'{"segment_id":%d}\n[]' % (MAX_SEGMENT_ID + 1),
        b'{"segment_id":1}\n' + zlib.compress(payload)[:-4],
        b'{"segment_id":1}\n{"not":"a list"}',
    ):
        with pytest.raises(BadRequest):
            read_recording(bad, 10_000)
