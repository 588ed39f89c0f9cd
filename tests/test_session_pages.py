"""The replay page in Debian chromium: a replay makes no request to anyone but RetroSpec.

The recorded page references a third-party host (another loopback port that logs every request
it gets): stylesheet url()s, an @import, a web font, an image, a prefetch hint and a referrer
meta. Watching the replay must not reach that host, unless the site allows remote assets; and
even then no Referer names the replay and the prefetch and preload hints stay dead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from retrospec.sites import set_replay_assets
from tests.support.accounts import PASSWORD, add_user, write
from tests.support.browser import query, wait_for
from tests.support.data import add_site
from tests.support.envelopes import envelope
from tests.support.rrweb import el, meta, txt
from tests.support.servers import RequestLog, ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def page_with_remote_assets(remote: str, ts: int) -> list[dict[str, Any]]:
    """A page load whose DOM pulls assets from `remote` in every way a page can."""
    css = (
        f"@import url({remote}/imported.css);"
        f"@font-face {{ font-family: F; src: url({remote}/font.woff2) format('woff2'); }}"
        f"body {{ font-family: F; background: url({remote}/bg.png); }}"
    )
    head = el(
        4,
        "head",
        {},
        el(5, "meta", {"name": "referrer", "content": "unsafe-url"}),
        el(6, "link", {"rel": "prefetch", "href": f"{remote}/prefetch.js"}),
        el(7, "link", {"rel": "preload", "as": "image", "href": f"{remote}/preload.png"}),
        el(8, "style", {}, {"type": 3, "textContent": css, "isStyle": True, "id": 9}),
    )
    body = el(
        10,
        "body",
        {},
        el(11, "h1", {}, txt(12, "Checkout")),
        el(13, "img", {"src": f"{remote}/img.png", "width": "10", "height": "10"}),
        el(14, "div", {"style": f"background-image: url({remote}/inline.png)"}, txt(15, "x")),
    )
    dom = {
        "type": 0,
        "childNodes": [
            {"type": 1, "name": "html", "publicId": "", "systemId": "", "id": 2},
            el(3, "html", {}, head, body),
        ],
        "id": 1,
    }
    return [
        meta(ts, "https://shop.example/checkout"),
        {
            "type": 2,
            "data": {"node": dom, "initialOffset": {"left": 0, "top": 0}},
            "timestamp": ts + 1,
        },
        {
            "type": 3,
            "data": {"source": 1, "positions": [{"x": 5, "y": 5, "id": 11, "timeOffset": 0}]},
            "timestamp": ts + 2000,
        },
    ]


def sign_in(page: Any, server: ServerProcess, path: str) -> None:
    page.goto(server.base_url + path)
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def watch(page: Any) -> None:
    page.wait_for_selector("#replay[data-ready='1'] .rr-player iframe", state="attached")
    page.evaluate("window.retrospecPlayer.play()")
    page.wait_for_timeout(2500)  # long enough for every asset the rebuilt page asks for


def test_a_replay_fetches_nothing_from_other_hosts_unless_the_site_allows_it(
    serve: Callable[..., ServerProcess], browser: Any, request_log: RequestLog
) -> None:
    server = serve(demo="false", replay_interval_seconds="0.5")
    site, key = add_site(server.settings, "shop")
    add_user(server.settings)
    sid = str(uuid.uuid4())
    ts = int(time.time() * 1000) - 60_000
    events = page_with_remote_assets(request_log.origin, ts)
    body = envelope({"id": sid, "url": "https://shop.example/checkout"}, 0, events=events)
    answer = httpx.post(f"{server.base_url}/api/v1/ingest", params={"key": key}, json=body)
    assert answer.status_code == 202, answer.text
    db = server.settings.db_path
    wait_for(
        lambda: query(db, "SELECT 1 FROM sessions WHERE id = ? AND replay_status = 'ready'", sid),
        what="the replay",
    )

    context = browser.new_context()
    page = context.new_page()
    loaded: list[str] = []
    page.on("requestfinished", lambda r: loaded.append(r.url))
    sign_in(page, server, f"/sessions/{sid}")
    watch(page)
    frame = page.frame_locator("#replay .rr-player iframe")
    frame.locator("text=Checkout").first.wait_for(state="attached")  # the page did rebuild
    # Blocked (the default): the third party never hears of this replay.
    assert request_log.requests == []
    assert not [u for u in loaded if u.startswith(request_log.origin)]
    assert "blocked" in page.content() or "not fetched" in page.content()

    # The site allows remote assets: the viewer's browser loads them, so the listener sees
    # them; but without a Referer naming RetroSpec, and never the prefetch/preload hints.
    write(server.settings, lambda c: set_replay_assets(c, site.id, "remote"))
    page.reload()
    watch(page)
    wait_for(lambda: request_log.requests, what="remote assets")
    paths = {r["path"] for r in request_log.requests}
    assert "/img.png" in paths
    assert not paths & {"/prefetch.js", "/preload.png"}
    # The recorded page's referrer meta (unsafe-url) is overruled: no request names the replay
    # (Chromium still sends this server's origin for requests a stylesheet starts).
    assert not [r for r in request_log.requests if "/sessions" in r["referer"]]
    context.close()
