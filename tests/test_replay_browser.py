"""Replays from events the vendored rrweb recorder really emits in Debian chromium."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrospec.paths import assets_dir
from tests.support.replays import Env, make_env, sid
from tests.support.servers import StaticSite

pytestmark = [pytest.mark.browser]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Cart</title><link rel="icon" href="data:,"></head>
<body>
<h1>Your cart</h1>
<button id="pay" class="btn primary"><span>Pay now</span></button>
<a href="#/checkout" id="go">Checkout</a>
<input id="email" type="email" placeholder="you@example.com">
<div class="cart-item">Blue shoes</div>
<p class="secret">Card ending 4242</p>
<script src="rrweb-record.js"></script>
<script>
window.__events = [];
const record = rrwebRecord.record;
record({ emit(e) { window.__events.push(e); }, maskTextSelector: ".secret" });
// What the SDK does on SPA navigations and captured failures.
addEventListener("hashchange", () => record.addCustomEvent("navigation", { url: location.href }));
document.getElementById("pay").addEventListener("click", () => {
  const retry = document.createElement("button");
  retry.className = "retry";
  retry.textContent = "Try again";
  document.body.appendChild(retry);
  record.addCustomEvent("retrospec.failure", {
    kind: "error", type: "TypeError", message: "card is undefined", ts: Date.now() });
});
</script>
</body></html>
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path / "data")
    yield e
    e.conn.close()


def test_real_rrweb_recording_builds_a_labelled_replay(
    env: Env, browser: Any, static_site: StaticSite
) -> None:
    shutil.copy(
        assets_dir() / "vendor" / "rrweb-record-2.1.6.umd.min.js",
        static_site.root / "rrweb-record.js",
    )
    url = static_site.write("cart.html", PAGE)
    page = browser.new_page()
    try:
        page.goto(url)
        page.click("#pay span")
        page.wait_for_selector(".retry")
        page.fill("#email", "bob@secret.example")
        for _ in range(3):
            page.click(".retry", delay=10)
        page.click(".secret")
        page.click("#go")
        page.wait_for_timeout(300)  # let rrweb flush its mutation buffer
        events: list[dict[str, Any]] = json.loads(page.evaluate("JSON.stringify(__events)"))
    finally:
        page.close()

    s = sid(200)
    half = len(events) // 2
    env.send(s, 1, events[half:])  # the later half arrives first
    env.send(s, 0, events[:half])
    result = env.run()
    assert result.items == 1 and result.errors == 0
    row = env.session(s)
    assert row["replay_status"] == "ready", row["replay_reason"]
    played = env.events(s)
    assert [e["type"] for e in played[:4]] == [0, 1, 4, 2]  # as rrweb records a page load
    assert len(played) == len(events)

    markers = [(kind, label) for kind, label, _ in env.markers(s)]
    clicks = [label for kind, label in markers if kind == "click"]
    assert clicks[0] == 'button "Pay now"'
    assert clicks[1:4] == ['button "Try again"'] * 3
    assert clicks[4] == "p.secret"  # masked text is not used as a label
    assert clicks[5] == 'link "Checkout"'
    assert ("rage_click", 'button "Try again"') in markers
    assert ("input", "input #email") in markers
    assert ("failure", "TypeError: card is undefined") in markers
    assert markers[-1] == ("navigation", url.split("?")[0] + "#/checkout")
    assert row["clicks"] == 6 and row["rage_clicks"] == 1
    stored = json.dumps([list(r) for r in env.conn.execute("SELECT * FROM replay_markers")])
    assert "bob@" not in stored and "4242" not in stored
