"""A clip's plan: window, frame times, idle fast-forward and the caption strip."""

from __future__ import annotations

import re

import pytest

from retrospec.errors import BadRequest
from retrospec.video import timeline
from retrospec.video.timeline import CaptionMarker, plan, window
from tests.support.rrweb import custom, move, page_load

T0 = 1_732_560_000_000


def test_window_around_a_failure_is_20_s_before_to_3_s_after_clamped_to_the_recording() -> None:
    assert window(T0, T0 + 60_000, T0, failure_ts=T0 + 30_000) == (T0 + 10_000, T0 + 33_000)
    assert window(T0, T0 + 60_000, T0, failure_ts=T0 + 5_000) == (T0, T0 + 8_000)
    assert window(T0, T0 + 60_000, T0, from_ms=1_000, to_ms=4_000) == (T0 + 1_000, T0 + 4_000)
    assert window(T0, T0 + 60_000, T0) == (T0, T0 + 60_000)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"from_ms": 70_000, "to_ms": 80_000}, "outside the session (0-60000 ms)"),
        ({"from_ms": 5_000, "to_ms": 5_000}, "empty window"),
        ({"failure_ts": T0 + 200_000}, "outside the session"),
    ],
)
def test_a_window_outside_the_recording_is_refused(args: dict[str, int], message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        window(T0, T0 + 60_000, T0, **args)  # type: ignore[arg-type]


def events_with_gap() -> list[dict[str, object]]:
    """Activity for 4 s, 30 s of nothing, activity for 2 s."""
    active = [move(T0 + 500 * i) for i in range(1, 9)]
    later = [move(T0 + 34_000 + 500 * i) for i in range(0, 5)]
    return timeline.playable_events([*page_load(T0), *active, *later])


def test_plan_plays_active_time_at_speed_and_fast_forwards_idle_gaps() -> None:
    events = events_with_gap()
    p = plan(events, [], T0, T0 + 36_000, origin_ts=T0, entry_url="https://x.test/")
    # 4 s active + 1 s for the 30 s gap + 2 s active.
    assert p.duration_s == pytest.approx(7.0, abs=0.1)
    assert p.skipped_ms == 29_000
    assert [f.ts for f in p.frames] == sorted(f.ts for f in p.frames)
    assert p.frames[0].ts == T0 and p.frames[-1].ts <= T0 + 36_000
    skipping = [f for f in p.frames if f.skipping]
    assert len(skipping) == 10 and skipping[0].skipping == "skipping 0:30 idle"
    fast = plan(events, [], T0, T0 + 4_000, origin_ts=T0, entry_url="", speed=2)
    assert fast.duration_s == pytest.approx(2.0, abs=0.1)


def test_captions_show_clock_page_recent_click_and_the_failure_once_it_happened() -> None:
    events = timeline.playable_events([*page_load(T0), *(move(T0 + 400 * i) for i in range(1, 20))])
    markers = [
        CaptionMarker(T0 + 1_000, "click", 'button "Pay"'),
        CaptionMarker(T0 + 2_000, "failure", "TypeError: card is undefined"),
        CaptionMarker(T0 + 5_000, "navigation", "https://x.test/done"),
    ]
    p = plan(events, markers, T0, T0 + 7_000, origin_ts=T0 - 61_000, entry_url="https://x.test/")
    at = {f.ts: f for f in p.frames}
    assert at[T0].clock == "1:01" and at[T0].url == "https://x.test/" and not at[T0].failure
    assert at[T0 + 1_500].action == 'Click button "Pay"'
    assert at[T0 + 2_600].action == ""  # a click is shown for 1.5 s
    assert at[T0 + 2_000].failure == "TypeError: card is undefined"
    assert at[T0 + 6_000].url == "https://x.test/done" and at[T0 + 6_000].failure
    assert timeline.failure_frame(p, T0 + 2_000) == 20


def test_playable_events_drop_custom_and_malformed_events_and_sort() -> None:
    raw = [move(T0 + 5), custom(T0 + 1, "x", {}), {"type": 3}, "junk", *page_load(T0)]
    kept = timeline.playable_events(raw)
    assert [e["type"] for e in kept] == [4, 2, 3]
    assert timeline.viewport(kept) == (1280, 800)
    assert timeline.viewport([]) == (1280, 800)
