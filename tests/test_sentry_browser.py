"""The stock Sentry browser SDK (with Session Replay) pointed at a real `retrospec serve`.

@sentry/browser is bundled from npm with esbuild at test time (tests/support/sentry_sdk.py) and
runs in Debian chromium on pages served from another loopback origin.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from retrospec.issues import queries as issues
from retrospec.issues.evidence import get_evidence
from retrospec.settings import Settings
from retrospec.sites import Site, dsn
from retrospec.storage.db import reading
from tests.support.accounts import PASSWORD
from tests.support.data import add_site
from tests.support.sentry_sdk import FLUSH_REPLAY, write_shop
from tests.support.servers import ServerProcess, StaticSite, free_port, serve_static, server_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]
T = TypeVar("T")


def read(settings: Settings, fn: Callable[[Any], T]) -> T:
    with reading(settings.db_path) as conn:
        return fn(conn)


def rows(settings: Settings, sql: str, *args: Any) -> list[Any]:
    return read(settings, lambda c: c.execute(sql, args).fetchall())


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 40.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class World:
    server: ServerProcess
    site: StaticSite
    shop: Site

    @property
    def settings(self) -> Settings:
        return self.server.settings

    def page_url(self, name: str) -> str:
        return f"{self.site.origin}/{name}"


@pytest.fixture(scope="module")
def world(
    browser: Any, sentry_sdk: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sentry-browser")
    data = root / "data"
    data.mkdir()
    env = server_env(data, replay_interval_seconds="0.5", cluster_interval_seconds="0.5")
    created = subprocess.run(
        [sys.executable, "-m", "retrospec", "users", "add", "alice", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    site_root = root / "site"
    site_root.mkdir()
    with serve_static(site_root) as site:
        server = ServerProcess(data_dir=data, port=free_port(), env=env)
        server.start()
        try:
            shop, _key = add_site(server.settings, "shop", [site.origin])
            site_dsn = dsn(shop, server.base_url)
            assert site_dsn
            write_shop(site_root, site_dsn, name="replay.html")
            write_shop(site_root, site_dsn, name="buffer.html", session_rate=0.0)
            write_shop(
                site_root,
                site_dsn,
                name="errors.html",
                session_rate=0.0,
                extra={"replaysOnErrorSampleRate": 0.0},
            )
            yield World(server, site, shop)
        finally:
            server.stop()


def shop_visit(browser: Any, url: str) -> str | None:
    """A visitor adds to the cart, types, checks out (the page throws); returns the replay id."""
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function("window.Sentry && Sentry.getReplay()")
        page.wait_for_timeout(400)
        page.click("#add")
        page.fill("#email", "ada@example.com")
        page.wait_for_timeout(1200)
        page.click("#checkout")
        page.wait_for_timeout(1000)
        page.click("#add")
        page.wait_for_timeout(300)
        replay_id: str | None = page.evaluate(FLUSH_REPLAY)
        return replay_id
    finally:
        context.close()


def sign_in(page: Any, world: World, path: str) -> None:
    page.goto(world.server.base_url + path)
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_an_error_in_two_replayed_sessions_is_one_issue_with_playable_replays(
    browser: Any, world: World
) -> None:
    replays = [shop_visit(browser, world.page_url("replay.html")) for _ in range(2)]
    assert all(replays) and replays[0] != replays[1]
    sessions = {f"sr-{r}" for r in replays}
    settings = world.settings

    def issue() -> Any:
        items, _ = read(settings, lambda c: issues.list_issues(c, kind="error"))
        found = [i for i in items if i.session_count >= 2]
        return found[0] if found else None

    found = wait_for("one issue with both sessions", issue)
    assert found.failure_count == 2 and "amount" in found.title

    def built() -> bool:
        # Both replays ready with every segment in (the representative can change till then).
        done = rows(
            settings,
            "SELECT count(*) FROM sessions WHERE id IN (?, ?) AND replay_status = 'ready' "
            "AND chunks = replay_chunks",
            *sorted(sessions),
        )
        return bool(done[0][0] == 2)

    wait_for("both replays built", built)

    def evidence() -> Any:
        ev = read(settings, lambda c: get_evidence(c, found.id))
        rep = ev.representative
        return ev if rep and rep.replay_status == "ready" and rep.context_ms > 0 else None

    ev = wait_for("a ready representative replay", evidence)
    assert {s.session_id for s in ev.sessions} == sessions
    assert ev.representative.session_id in sessions  # the replay that shows the failure
    names = [f["function"] for f in ev.frames]
    assert names[:3] == ["computeCartTotal", "checkout", "onCheckoutClick"]
    steps = [(s.kind, s.label) for s in ev.steps]
    assert steps and steps[-1][0] == "click"  # the click on Checkout, from the replay

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        sign_in(page, world, f"/issues/{found.id}")
        page.click("a.btn.primary:has-text('Watch the replay')")
        page.wait_for_url(f"{world.server.base_url}/sessions/*?t=*")
        shown = page.url.split("/sessions/")[1].split("?")[0]
        assert shown == ev.representative.session_id and shown in sessions
        for session_id in sorted(sessions):
            (row,) = rows(
                settings,
                "SELECT replay_status, duration_ms, replay_start_ts FROM sessions WHERE id = ?",
                session_id,
            )
            assert row[0] == "ready" and 1_000 < row[1] < 60_000  # seconds, not 57 years
            (failure_ts,) = rows(
                settings, "SELECT ts FROM failures WHERE session_id = ?", session_id
            )
            page.goto(f"{world.server.base_url}/sessions/{session_id}")
            page.wait_for_selector("#replay[data-ready='1'] .rr-player iframe", state="attached")
            total = page.evaluate("window.retrospecPlayer.getReplayer().getMetaData().totalTime")
            assert abs(total - row[1]) < 1_500, (total, row[1])
            marker = page.locator("#marker-list .marker.kind-failure").first
            assert int(marker.get_attribute("data-ts") or 0) == failure_ts[0]
            assert int(marker.get_attribute("data-offset") or 0) == failure_ts[0] - row[2]
            finished = page.evaluate(
                """() => new Promise((done) => {
                  const player = window.retrospecPlayer, replayer = player.getReplayer();
                  replayer.on("finish", () => done(true));
                  player.goto(Math.max(0, replayer.getMetaData().totalTime - 500), true);
                  setTimeout(() => done(false), 8000);
                })"""
            )
            assert finished, f"the replay of {session_id} did not play to its end"
    finally:
        context.close()


def test_a_buffered_replay_arrives_after_the_error_and_holds_it(browser: Any, world: World) -> None:
    replay_id = shop_visit(browser, world.page_url("buffer.html"))
    assert replay_id
    session = f"sr-{replay_id}"
    settings = world.settings

    def ready() -> Any:
        found = rows(
            settings,
            "SELECT s.replay_status, s.replay_start_ts, s.replay_end_ts, f.ts, f.kind "
            "FROM sessions s JOIN failures f ON f.session_id = s.id WHERE s.id = ?",
            session,
        )
        return found if found and found[0][0] == "ready" else None

    (_status, start, end, failure_ts, kind) = wait_for("the buffered replay", ready)[0]
    assert kind == "error"
    assert start < failure_ts <= end  # the buffer holds what happened before the error
    (segments,) = rows(
        settings, "SELECT count(*) FROM chunks WHERE session_id = ? AND seq < 1000000", session
    )
    assert segments[0] >= 1


def test_capture_message_rejections_and_onerror_arrive_as_their_kinds(
    browser: Any, world: World
) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(world.page_url("errors.html"))
        page.wait_for_function("window.Sentry && Sentry.getClient()")
        page.add_script_tag(content="checkout();")  # uncaught: window.onerror
        page.evaluate("rejectPayment(); 0")
        page.evaluate("Sentry.captureMessage('cart is empty', 'warning'); 0")
        page.evaluate("() => Sentry.flush(5000)")
        trace = page.evaluate("Sentry.getCurrentScope().getPropagationContext().traceId")
    finally:
        context.close()

    def failures() -> Any:
        found = rows(
            world.settings,
            "SELECT kind, type, message, session_id FROM failures WHERE session_id = ? ORDER BY ts",
            f"st-{trace}",
        )
        return found if len(found) == 3 else None

    got = wait_for("three failures", failures)
    assert [(k, t, m) for k, t, m, _ in got] == [
        ("error", "TypeError", "Cannot read properties of undefined (reading 'amount')"),
        ("unhandledrejection", "Error", "payment gateway timeout"),
        ("custom", None, "cart is empty"),
    ]


def test_an_over_quota_site_gets_429_and_the_sdk_backs_off(
    browser: Any, sentry_sdk: Path, serve: Any, static_site: StaticSite
) -> None:
    server = serve(rate_limit_per_second="0.02", rate_limit_burst="3", jobs="false")
    shop, _ = add_site(server.settings, "shop", [static_site.origin])
    site_dsn = dsn(shop, server.base_url)
    assert site_dsn
    write_shop(
        static_site.root,
        site_dsn,
        session_rate=0.0,
        extra={"replaysOnErrorSampleRate": 0.0},
    )
    sent: list[tuple[float, str]] = []
    answers: list[tuple[int, dict[str, str], bool]] = []
    context = browser.new_context()
    page = context.new_page()
    page.on("request", lambda r: "/envelope/" in r.url and sent.append((time.monotonic(), r.url)))
    page.on(
        "response",
        lambda r: (
            "/envelope/" in r.url
            and answers.append(
                (r.status, r.headers, b'"type":"event"' in (r.request.post_data_buffer or b""))
            )
        ),
    )
    try:
        page.goto(f"{static_site.origin}/shop.html")
        page.wait_for_function("window.Sentry && Sentry.getClient()")
        for i in range(3):
            page.evaluate(f"Sentry.captureException(new Error('boom {i}')); 0")
            page.wait_for_timeout(400)
        statuses = [s for s, _, _ in answers]
        assert 429 in statuses, statuses
        limited = next(h for s, h, _ in answers if s == 429)
        assert limited["x-sentry-rate-limits"].split(":")[2] == "project"
        before = len(sent)
        for i in range(4):  # inside the advertised window the SDK drops these itself
            page.evaluate(f"Sentry.captureException(new Error('dropped {i}')); 0")
            page.wait_for_timeout(300)
        assert len(sent) == before, "the SDK sent requests while it was told to back off"
    finally:
        context.close()
    assert any(event for s, _, event in answers if s == 200)  # the first error got through
    stored = rows(server.settings, "SELECT message FROM failures")
    assert len(stored) == sum(1 for s, _, event in answers if s == 200 and event)
