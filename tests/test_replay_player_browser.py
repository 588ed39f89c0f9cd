"""The progressive replay player in Debian chromium against a real `retrospec serve`.

An 8-minute session recorded with a full snapshot every 2 minutes (as the SDK records in
continuous mode) is stored in segments; the player opens near its end from the nearest
checkpoint, loads the rest in the background (earlier segments after later ones), seeks from the
checkpoint before the target, and keeps up with a session that is still recording.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from retrospec.bench.sessions import chunked, clock_text, recorded_session
from retrospec.replay import artifact
from retrospec.replay import queries as replays
from tests.support.accounts import PASSWORD, add_user
from tests.support.browser import query, wait_for
from tests.support.data import add_site
from tests.support.envelopes import envelope
from tests.support.servers import ServerProcess, free_port, server_env
from tests.support.shop import run_jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MINUTE = 60_000
CLOCK = "#clock"


@dataclass
class World:
    server: ServerProcess
    key: str
    sid: str
    start: int
    segments: list[artifact.Segment]


def send(server: ServerProcess, key: str, sid: str, batches: list[list[Any]], first: int) -> None:
    """POST batches through the real ingest endpoint, sequence numbers from `first`."""
    with httpx.Client(base_url=server.base_url) as client:
        for n, events in enumerate(batches):
            body = envelope({"id": sid, "url": "https://shop.example/catalogue"}, first + n)
            body["events"] = events
            answer = client.post("/api/v1/ingest", params={"key": key}, json=body)
            assert answer.status_code == 202, answer.text


def wait_built(server: ServerProcess, sid: str, timeout: float = 90.0) -> replays.SessionView:
    """Until the replay holds every chunk the session has."""
    db = server.settings.db_path

    def built() -> bool:
        return bool(
            query(
                db,
                "SELECT 1 FROM sessions WHERE id = ? AND replay_status = 'ready' "
                "AND replay_chunks = chunks",
                sid,
            )
        )

    wait_for(built, timeout=timeout, what="the replay build")
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return replays.get_session(conn, sid)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("replay-player")
    data = root / "data"
    data.mkdir()
    env = server_env(data, replay_interval_seconds="0.5", demo="false")
    server = ServerProcess(data_dir=data, port=free_port(), env=env, log_dir=root)
    server.start()
    try:
        _site, key = add_site(server.settings, "shop")
        add_user(server.settings)
        sid = str(uuid.uuid4())
        start = int(time.time() * 1000) - 20 * MINUTE
        events = recorded_session(8, start, checkout_ms=2 * MINUTE)
        send(server, key, sid, chunked(events, 30_000), 0)
        session = wait_built(server, sid)
        assert session.segments is not None
        yield World(server, key, sid, start, session.segments)
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.on("pageerror", lambda e: print("pageerror:", e))
    yield pg
    context.close()


def sign_in(page: Any, server: ServerProcess, path: str) -> None:
    page.goto(server.base_url + path)
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#replay[data-ready='1']")


def clock(page: Any) -> str:
    return str(page.frame_locator("#replay .rr-player iframe").locator(CLOCK).inner_text())


def needed(segments: list[artifact.Segment], ts: int) -> list[int]:
    """The segments a player needs to show ts: from the checkpoint before it to its own."""
    at = max(i for i, s in enumerate(segments) if s.start_ts <= ts)
    first = max(i for i in range(at + 1) if segments[i].checkpoint)
    return list(range(first, at + 1))


# Logs the time of every event rrweb applies while drawing: a full snapshot's node tree and a
# mutation's text changes are read only to apply them (its bookkeeping reads type and source).
TRACE = """() => {
  const evs = window.retrospecPlayer.getReplayer().service.state.context.events;
  window.__touched = null; // reading a property wrapped by an earlier call logs nothing
  const watch = (e, obj, name) => {
    const value = obj[name];
    Object.defineProperty(obj, name, {
      configurable: true,
      get() { if (window.__touched) window.__touched.push(e.timestamp); return value; },
    });
  };
  for (const e of evs) {
    if (e.type === 2) watch(e, e.data, "node");
    else if (e.type === 3 && e.data.source === 0) watch(e, e.data, "texts");
  }
  window.__touched = [];
}"""


def test_long_replay_opens_near_the_end_from_its_checkpoint(page: Any, world: World) -> None:
    segs = world.segments
    assert sum(s.checkpoint for s in segs) >= 4 and len(segs) >= 8
    offset = 7 * MINUTE + 30_500
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    sign_in(page, world.server, f"/sessions/{world.sid}?t={offset}")
    state = page.evaluate("window.retrospecSegments")
    expected = needed(segs, world.start + offset)
    # The page head preloads exactly those (before any script runs); the player's fetches are
    # served from the preloads, not sent twice.
    preloads = page.locator("link[rel=preload][as=fetch]").evaluate_all(
        "(ls) => ls.map((l) => l.getAttribute('href'))"
    )
    assert [p.split("seg=")[1].split("&")[0] for p in preloads if "seg=" in p] == [
        str(i) for i in expected
    ]
    assert f"/sessions/{world.sid}/markers" in preloads
    assert expected[0] > 0 and segs[expected[0]].checkpoint
    assert state["first"] == expected
    assert state["order"][: len(expected)] == expected  # fetched first, before the rest
    page.frame_locator("#replay .rr-player iframe").locator(CLOCK).wait_for(state="attached")
    wait_for(lambda: clock(page) == clock_text(450), what="the page at 7:30")
    # The rest arrives in the background: later segments first, then back to the start.
    page.wait_for_selector("#replay[data-complete='1']", state="attached", timeout=30_000)
    order = page.evaluate("window.retrospecSegments.order")
    assert sorted(order) == list(range(len(segs)))
    for i in range(len(segs)):
        assert sum(f"events?seg={i}&" in u for u in requested) == 1, (i, requested)
    assert order.index(0) > order.index(expected[0])
    meta = page.evaluate("window.retrospecPlayer.getMetaData()")
    assert meta["startTime"] == world.start and meta["totalTime"] >= 8 * MINUTE - 1_000
    # Seeks apply events to the page itself, not through rrweb's virtual DOM (replay.js says why).
    assert page.evaluate("window.retrospecPlayer.getReplayer().config.useVirtualDom") is False


def test_a_seek_across_a_checkpoint_replays_only_from_that_checkpoint(
    page: Any, world: World
) -> None:
    segs = world.segments
    sign_in(page, world.server, f"/sessions/{world.sid}?t={7 * MINUTE}")
    page.wait_for_selector("#replay[data-complete='1']", state="attached", timeout=30_000)
    checkpoints = [s.start_ts for s in segs if s.checkpoint]
    for target_s, checkpoint in ((210, checkpoints[1]), (330, checkpoints[2])):
        # Back from 7:00 to 3:30 (past the checkpoints at 6 and 4 minutes), then on to 5:30
        # (across the one at 4): each time rrweb reads nothing older than the checkpoint.
        page.evaluate(TRACE)
        page.evaluate(f"window.retrospecPlayer.goto({target_s * 1000 + 500}, false)")
        wait_for(lambda t=target_s: clock(page) == clock_text(t), what=f"the page at {target_s}s")
        touched = page.evaluate("window.__touched")
        assert touched, "the seek drew nothing"
        assert min(touched) >= checkpoint, (min(touched) - world.start, checkpoint - world.start)
        assert max(touched) <= world.start + target_s * 1000 + 500 + 5_000


def test_segments_loaded_out_of_order_still_play_from_the_start(page: Any, world: World) -> None:
    sign_in(page, world.server, f"/sessions/{world.sid}?t={6 * MINUTE + 10_000}")
    page.wait_for_selector("#replay[data-complete='1']", state="attached", timeout=30_000)
    order = page.evaluate("window.retrospecSegments.order")
    assert order[0] > 0 and order[-1] == 0  # the start arrived last
    page.evaluate("window.retrospecPlayer.goto(30500, false)")
    wait_for(lambda: clock(page) == clock_text(30), what="the page at 0:30")
    page.evaluate("window.retrospecPlayer.play()")
    page.wait_for_timeout(2_200)
    page.evaluate("window.retrospecPlayer.pause()")
    shown = clock(page)
    assert shown in {clock_text(s) for s in (31, 32, 33)}, shown


def test_the_marker_list_is_lazy_and_follows_the_player(page: Any, world: World) -> None:
    sign_in(page, world.server, f"/sessions/{world.sid}")
    total = int(page.get_attribute("#marker-list", "data-total"))
    assert total > 40
    source = page.evaluate("document.documentElement.outerHTML")
    assert len(source) < 100_000
    page.wait_for_selector("#marker-more", state="detached")  # the rest came from /markers
    rendered = page.locator("#marker-list .marker").count()
    assert rendered < total
    # Follow the player: the current marker is the newest at or before the player's time,
    # also one far past the first screen of the list.
    offset = 7 * MINUTE + 45_000
    page.evaluate(f"window.retrospecPlayer.goto({offset}, false)")
    page.evaluate(
        "(() => { const l = document.getElementById('marker-list');"
        " l.scrollTop = l.scrollHeight; })()"
    )
    wait_for(
        lambda: page.locator("#marker-list .marker.current").count() == 1,
        what="the current marker",
    )
    current = int(page.get_attribute("#marker-list .marker.current", "data-ts"))
    last_index = int(page.get_attribute("#marker-list .marker.current", "data-index"))
    assert last_index >= 40
    assert current <= world.start + offset
    later = page.locator("#marker-list .marker").evaluate_all(
        "(bs) => bs.map((b) => parseInt(b.getAttribute('data-ts'), 10))"
    )
    assert all(ts <= current or ts > world.start + offset for ts in later)
    # Clicking a marker far down the list jumps the player there.
    page.locator(f"#marker-list .marker[data-index='{last_index}']").click()
    wait_for(
        lambda: (
            page.evaluate("window.retrospecPlayer.getReplayer().getCurrentTime()")
            >= current - world.start - 3_500
        ),
        what="the jump",
    )


# Every tick on the player's progress bar: its kind (the div's title) and its left in percent.
TICKS = """() => Array.from(document.querySelectorAll('#replay .rr-progress div[title]'))
  .filter((d) => d.style.left.endsWith('%'))
  .map((d) => [d.title, parseFloat(d.style.left)])"""
TAG_SLOTS = 150  # assets/js/replay.js


def test_progress_bar_ticks_are_capped_per_kind_yet_cover_every_marker(
    page: Any, world: World
) -> None:
    # A 30-minute session: a click every 10 s, more than the bar keeps.
    sid = str(uuid.uuid4())
    events = recorded_session(30, world.start - 40 * MINUTE, checkout_ms=2 * MINUTE)
    send(world.server, world.key, sid, chunked(events, 30_000), 0)
    # Built now, not after the rebuild wait a large recording session gets from the scheduler.
    run_jobs(world.server.settings, "replays", force=True)
    wait_built(world.server, sid)
    sign_in(page, world.server, f"/sessions/{sid}")
    markers = page.request.get(f"{world.server.base_url}/sessions/{sid}/markers").json()["markers"]
    clicks = [m[0] for m in markers if m[2] == "click"]
    assert len(clicks) > TAG_SLOTS  # enough to need capping
    ticks = page.evaluate(TICKS)
    click_ticks = sorted(left for kind, left in ticks if kind == "click")
    assert 0 < len(click_ticks) <= TAG_SLOTS
    meta = page.evaluate("window.retrospecPlayer.getMetaData()")
    span = meta["endTime"] - meta["startTime"]
    # No click is further than one slot from a tick: the bar still shows where they happened.
    for ts in clicks:
        at = (ts - meta["startTime"]) / span * 100
        assert min(abs(at - left) for left in click_ticks) <= 100 / TAG_SLOTS, ts


def test_a_session_still_recording_grows_while_watched(page: Any, world: World) -> None:
    sid = str(uuid.uuid4())
    start = int(time.time() * 1000) - 2 * MINUTE - 10_000
    events = recorded_session(2, start, checkout_ms=2 * MINUTE)
    first = [e for e in events if e["timestamp"] < start + MINUTE]
    rest = [e for e in events if e["timestamp"] >= start + MINUTE]
    batches = chunked(first, 10_000)
    send(world.server, world.key, sid, batches, 0)
    wait_built(world.server, sid)
    sign_in(page, world.server, f"/sessions/{sid}")
    page.wait_for_selector("#replay[data-complete='1']", state="attached", timeout=30_000)
    rev = page.get_attribute("#replay", "data-rev")
    meta = page.evaluate("window.retrospecPlayer.getMetaData()")
    assert meta["totalTime"] < MINUTE

    send(world.server, world.key, sid, chunked(rest, 10_000), len(batches))
    wait_built(world.server, sid)
    # The page polls the segment index and adds what is new, without a reload.
    wait_for(
        lambda: page.get_attribute("#replay", "data-rev") != rev,
        timeout=30,
        what="the new segment index",
    )
    wait_for(
        lambda: (
            page.evaluate("window.retrospecPlayer.getMetaData().totalTime") >= 2 * MINUTE - 1_000
        ),
        what="the longer timeline",
    )
    page.evaluate(f"window.retrospecPlayer.goto({MINUTE + 50_500}, false)")
    wait_for(lambda: clock(page) == clock_text(110), what="the page at 1:50")
