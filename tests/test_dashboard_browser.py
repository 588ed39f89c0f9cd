"""The dashboard in Debian chromium against a real `retrospec serve`, with data from the SDK.

One server and one recorded shop for the module (2 shared cores: keep it lean). Screenshots of
the issue list, issue page and replay page go to tests/artifacts/ for a human to look at.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from retrospec.issues import queries as issues
from retrospec.issues.evidence import get_evidence
from retrospec.replay import queries as replays
from retrospec.settings import Settings
from retrospec.storage.db import reading
from tests.support.accounts import PASSWORD
from tests.support.checkout import send_checkout_session
from tests.support.data import add_site
from tests.support.envelopes import envelope
from tests.support.paths import REPO
from tests.support.servers import ServerProcess, StaticSite, free_port, serve_static, server_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "tests" / "artifacts"
T = TypeVar("T")

SHOP_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Checkout · Shop</title>
<style>
  body {{ font-family: sans-serif; margin: 32px; color: #222; }}
  button {{ font-size: 16px; padding: 8px 16px; }}
  #status {{ margin-top: 12px; color: #b00; }}
</style>
<script src="{base}/sdk/retrospec.js"></script>
<script>
  window.rs = Retrospec.initRetrospec({{
    apiBaseUrl: "{base}", apiKey: "{key}", site: "shop",
    release: "shop@1.4.2", environment: "production", flushIntervalMs: 400
  }});
  // One page for every visitor (so stacks match); who is visiting comes from the query.
  window.rs.identify({{
    "1": {{id: "u1", email: "ana@example.com"}}, "2": {{id: "u2", name: "Bo"}}
  }}[new URLSearchParams(location.search).get("u")]);
</script>
</head>
<body>
  <h1>Checkout</h1>
  <p>Review your basket and pay.</p>
  <label>Coupon <input id="coupon" name="coupon"></label>
  <button id="pay" type="button">Pay now</button>
  <div id="status"></div>
  <script>
    function applyCoupon(basket) {{ return basket.price * 0.9; }}
    document.getElementById("pay").addEventListener("click", function () {{
      document.getElementById("status").textContent = "Payment failed";
      applyCoupon(undefined);
    }});
  </script>
</body>
</html>
"""


def read(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    """Run a read query function on a read-only connection."""
    with reading(settings.database) as conn:
        return fn(conn)


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0) -> T:
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
    key: str
    sessions: list[str]
    issue_id: int
    failure_offset: int
    hostile_session: str


def record_with_sdk(browser: Any, url: str) -> None:
    """Visit the shop page like a user: type, click Pay now twice (each throws); flush."""
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function("window.rs && window.Retrospec")
        page.wait_for_timeout(700)
        page.click("#coupon")
        page.keyboard.type("SAVE10", delay=40)
        page.wait_for_timeout(1200)
        page.click("#pay")
        page.wait_for_timeout(1500)
        page.click("#pay")
        page.wait_for_timeout(600)
        page.evaluate("window.rs.flush()")
    finally:
        context.close()


@pytest.fixture(scope="module", params=["sqlite", "pg+s3"])
def world(
    request: pytest.FixtureRequest, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("dashboard-browser")
    data = root / "data"
    data.mkdir()
    storage: dict[str, str] = {}
    if request.param == "pg+s3":  # the whole browser flow once on PostgreSQL + S3
        pg = request.getfixturevalue("pg_cluster")
        s3 = request.getfixturevalue("s3_server")
        storage = {"database_url": pg.new_database(), "blob_url": s3.new_prefix()}
        storage.update(s3.settings_env())
    env = server_env(data, replay_interval_seconds="0.5", cluster_interval_seconds="0.5", **storage)
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
        server.start(timeout=180)
        try:
            settings = server.settings
            _, key = add_site(settings, "shop", [site.origin])
            url = site.write("shop.html", SHOP_PAGE.format(base=server.base_url, key=key))
            for user in ("1", "2"):
                record_with_sdk(browser, f"{url}?u={user}")

            def issue() -> Any:
                items, _ = read(settings, lambda c: issues.list_issues(c, kind="error"))
                return items[0] if items else None

            found = wait_for("the SDK's failures to become an issue", issue)

            def evidence() -> Any:
                ev = read(settings, lambda c: get_evidence(c, found.id))
                rep = ev.representative
                ready = rep and rep.replay_status == "ready" and rep.offset_ms
                return ev if ready and found.session_count >= 2 else None

            ev = wait_for("a ready replay for the issue", evidence)
            with httpx.Client(base_url=server.base_url) as client:
                post = lambda path, body: client.post(path, json=body)  # noqa: E731
                hostile = send_checkout_session(post, key, hostile=True, network=False)

            def hostile_ready() -> bool:
                s = read(settings, lambda c: replays.get_session(c, hostile))
                return s.replay_status == "ready"

            wait_for("the hostile replay", hostile_ready)
            yield World(
                server=server,
                site=site,
                key=key,
                sessions=[s.session_id for s in ev.sessions],
                issue_id=found.id,
                failure_offset=int(ev.representative.offset_ms),
                hostile_session=hostile,
            )
        finally:
            server.stop()


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.on("console", lambda m: print("console:", m.type, m.text))
    pg.on("pageerror", lambda e: print("pageerror:", e))
    yield pg
    context.close()


def sign_in(page: Any, world: World, path: str = "/") -> None:
    page.goto(world.server.base_url + path)
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def player_time(page: Any) -> float:
    return float(page.evaluate("window.retrospecPlayer.getReplayer().getCurrentTime()"))


def wait_player(page: Any) -> Any:
    page.wait_for_selector("#replay[data-ready='1'] .rr-player iframe", state="attached")
    frame = page.frame_locator("#replay .rr-player iframe")
    return frame


# --- tests ---------------------------------------------------------------------------------------


def test_login_is_required_and_wrong_passwords_are_refused(page: Any, world: World) -> None:
    base = world.server.base_url
    page.goto(f"{base}/issues/{world.issue_id}")
    assert page.url == f"{base}/login?next=/issues/{world.issue_id}"
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert "Wrong username or password" in page.inner_text(".alert.error")
    shot(page, "login-page.png")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/issues/{world.issue_id}")
    assert page.locator("h1.issue-title").is_visible()


def test_issue_list_filter_open_resolve_reopen(page: Any, world: World) -> None:
    base = world.server.base_url
    sign_in(page, world)
    page.wait_for_selector(f"#issue-{world.issue_id}")
    assert "Cannot read properties of undefined" in page.inner_text("#issue-list")
    shot(page, "issue-list.png")

    # Filters swap the list in place and keep the URL shareable.
    page.select_option("select[name=kind]", "network")
    page.wait_for_url(f"{base}/?kind=network")
    page.wait_for_selector(f"#issue-{world.issue_id}", state="detached")
    page.select_option("select[name=kind]", "error")
    page.wait_for_url(f"{base}/?kind=error")
    page.fill("#q", "price")
    page.wait_for_url(f"{base}/?q=price&kind=error")
    page.wait_for_selector(f"#issue-{world.issue_id}")

    page.click(f"#issue-{world.issue_id}")
    page.wait_for_url(f"{base}/issues/{world.issue_id}")
    page.wait_for_selector(".frame.in-app")
    shot(page, "issue-page.png")
    page.evaluate("window.scrollTo(0, 0)")

    # htmx action: the badge changes, the page does not navigate.
    page.evaluate("window.__noReload = 1")
    page.click("#issue-status button.action-resolve")
    page.wait_for_selector("#issue-status[data-status='resolved']")
    assert page.inner_text("#issue-status .badge.big") == "Resolved"
    assert page.evaluate("window.__noReload") == 1
    assert page.url == f"{base}/issues/{world.issue_id}"
    page.click("#issue-status button.action-reopen")
    page.wait_for_selector("#issue-status[data-status='open']")
    assert page.evaluate("window.__noReload") == 1

    # Copy as Markdown puts the report on the clipboard (or the textarea fallback).
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button[data-copy='md-source']")
    page.wait_for_selector("#toast:not([hidden])")
    assert "copied" in page.inner_text("#toast").lower()
    pasted = page.evaluate("navigator.clipboard.readText()")
    assert pasted.startswith("## TypeError") and "### Steps before the failure" in pasted

    page.click("nav.nav a[href='/sites']")
    page.wait_for_selector(".site-card")
    shot(page, "sites-page.png")


def test_replay_plays_and_failure_markers_jump_before_the_failure(page: Any, world: World) -> None:
    base = world.server.base_url
    sign_in(page, world, f"/issues/{world.issue_id}")
    page.click("a.btn.primary:has-text('Watch the replay')")
    page.wait_for_url(f"{base}/sessions/*?t=*")
    frame = wait_player(page)
    frame.locator("text=Checkout").first.wait_for(state="attached")
    assert "Review your basket" in frame.locator("body").inner_text()
    # ?t= opened the player at the failure.
    t = int(page.url.split("t=")[1])
    assert t == world.failure_offset
    assert abs(player_time(page) - t) < 600
    iframe = page.locator("#replay .rr-player iframe")
    sandbox = iframe.get_attribute("sandbox") or ""
    assert "allow-scripts" not in sandbox and "allow-same-origin" in sandbox
    shot(page, "replay-page.png")

    # A failure marker jumps to 3 s before the failure and plays.
    page.locator("#marker-list .marker.kind-click").first.click()
    marker = page.locator("#marker-list .marker.kind-failure").first
    offset = int(marker.get_attribute("data-offset") or "0")
    marker.click()
    now = player_time(page)
    assert offset - 3000 - 250 <= now <= offset, (offset, now)
    page.wait_for_timeout(800)
    assert player_time(page) > now  # it plays
    assert page.locator("#marker-list .marker.current").count() == 1


def test_recorded_script_never_runs_in_the_replay(page: Any, world: World) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    sign_in(page, world, "/sessions")
    page.wait_for_selector(".session-row")
    shot(page, "sessions-page.png")
    page.goto(f"{world.server.base_url}/sessions/{world.hostile_session}")
    frame = wait_player(page)
    frame.locator("text=Checkout").first.wait_for(state="attached")
    # Play through the whole recording (the hostile nodes are in the first snapshot).
    page.evaluate("window.retrospecPlayer.play()")
    page.wait_for_timeout(2500)
    page.evaluate("window.retrospecPlayer.goto(19000, false)")
    page.wait_for_timeout(500)
    iframe = page.locator("#replay .rr-player iframe")
    assert "allow-scripts" not in (iframe.get_attribute("sandbox") or "")
    assert page.evaluate("window.__pwned") is None
    assert page.title().startswith("Session")
    inner = iframe.element_handle().content_frame()
    assert inner.evaluate("window.__pwned === undefined")
    assert inner.evaluate("document.title") != "pwned"
    html = inner.content()
    assert "onerror" in html  # the hostile markup is there, it just cannot run
    assert "__pwned" in html and "<script" not in html.lower()  # rrweb rebuilt it inert
    assert not [u for u in requests if "pwned" in u], requests
    assert not [m for m in messages if "pwned" in m]


def test_pages_work_at_phone_width(browser: Any, world: World) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    try:
        sign_in(page, world)
        page.wait_for_selector(f"#issue-{world.issue_id}")
        shot(page, "issue-list-phone.png")
        widths = {"list": page.evaluate("document.documentElement.scrollWidth")}
        page.goto(f"{world.server.base_url}/issues/{world.issue_id}")
        shot(page, "issue-page-phone.png")
        widths["issue"] = page.evaluate("document.documentElement.scrollWidth")
        page.goto(f"{world.server.base_url}/sessions/{world.sessions[0]}")
        wait_player(page)
        shot(page, "replay-page-phone.png")
        widths["replay"] = page.evaluate("document.documentElement.scrollWidth")
        # Nothing scrolls sideways on a phone.
        assert all(w <= 390 for w in widths.values()), widths
    finally:
        context.close()


def test_merge_and_unmerge_on_the_issue_page(page: Any, world: World) -> None:
    """Two issues the rules kept apart (different properties), merged and unmerged in place."""
    base = world.server.base_url
    settings = world.server.settings
    _, key = add_site(settings, "blog", [])
    stack = "TypeError: x\n    at renderPost (https://blog.example/assets/main-YGIWARMX.js:1:{col})"
    with httpx.Client(base_url=base) as client:
        for prop, col in (("title", 10), ("title", 10), ("author", 90), ("author", 90)):
            msg = f"Cannot read properties of undefined (reading '{prop}')"
            failure = {"kind": "error", "ts": 1_732_560_005_000, "type": "TypeError",
                       "message": msg, "stack": stack.format(col=col)}  # fmt: skip
            body = envelope({"id": str(uuid.uuid4()), "user_agent": "Mozilla/5.0"}, 0,
                            failures=[failure])  # fmt: skip
            assert client.post(f"/api/v1/ingest?key={key}", json=body).status_code == 202

    def two_issues() -> Any:
        items, _ = read(settings, lambda c: issues.list_issues(c, site="blog", q="reading"))
        return sorted(items, key=lambda i: i.id) if len(items) == 2 else None

    title_issue, author_issue = wait_for("the blog's two issues", two_issues)
    sign_in(page, world, f"/issues/{title_issue.id}")
    page.evaluate("window.__noReload = 1")
    page.fill("#issue-merge input[name=sources]", str(author_issue.id))
    page.click("#issue-merge button:has-text('Merge')")
    page.wait_for_selector(f"#issue-merge .merged-list a[href='/issues/{author_issue.id}']")
    assert page.evaluate("window.__noReload") == 1  # swapped in place by htmx
    assert f"Merged #{author_issue.id} into this issue." in page.inner_text("#issue-merge")
    assert page.inner_text(".stat-strip .stat-value >> nth=0") == "4"
    assert f"Merged #{author_issue.id} into this" in page.inner_text("#history")
    shot(page, "issue-merged.png")
    merged = read(settings, lambda c: issues.get_issue(c, author_issue.id))
    assert merged.status == "merged"

    page.click(f"#issue-merge button[aria-label='Unmerge #{author_issue.id}']")
    page.wait_for_selector("#issue-merge .merged-list", state="detached")
    assert page.inner_text(".stat-strip .stat-value >> nth=0") == "2"
    assert f"Unmerged #{author_issue.id}" in page.inner_text("#history")
    restored = read(settings, lambda c: issues.get_issue(c, author_issue.id))
    assert (restored.status, restored.failure_count) == ("open", 2)
    # The merged issue's own page offers the way back too.
    page.fill("#issue-merge input[name=sources]", str(author_issue.id))
    page.click("#issue-merge button:has-text('Merge')")
    page.wait_for_selector(f"#issue-merge .merged-list a[href='/issues/{author_issue.id}']")
    page.goto(f"{base}/issues/{author_issue.id}")
    assert f"Merged into issue #{title_issue.id}" in page.inner_text("#issue-merge")
    page.click("#issue-merge button:has-text('Unmerge')")
    page.wait_for_url(f"{base}/issues/{title_issue.id}")
    page.wait_for_selector("#issue-merge .merged-list", state="detached")
