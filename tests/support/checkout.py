"""A recorded checkout visit, the dashboard tests' data: the page as rrweb serialises it, 20 s of
events with a failed "Pay now", and its failures, sent as two batches through any post function.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from tests.support.envelopes import envelope
from tests.support.rrweb import el, txt

PAGE = "https://shop.example.com/checkout"
STACK = (
    "TypeError: Cannot read properties of undefined (reading 'price')\n"
    "    at applyCoupon (https://shop.example.com/static/app.3f9a1c2b.js:120:15)\n"
    "    at HTMLButtonElement.onPay (https://shop.example.com/static/app.3f9a1c2b.js:88:9)\n"
    "    at invokeGuarded (https://shop.example.com/static/vendor.11aa22bb.js:4:1200)"
)
HOSTILE_SCRIPT = (
    "window.__pwned = 'script'; document.title = 'pwned'; "
    "fetch('/pwned-script'); parent.__pwned = 'script';"
)
HOSTILE_ONERROR = (
    "window.__pwned = 'onerror'; new Image().src = '/pwned-onerror'; parent.__pwned = 'onerror';"
)

Post = Callable[[str, dict[str, Any]], Any]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_session_id() -> str:
    return uuid.uuid4().hex


def shop_dom(*, hostile: bool = False) -> dict[str, Any]:
    """The checkout page as rrweb serialises it; ids 1-40. hostile adds script and onerror."""
    extra: list[Any] = []
    if hostile:
        extra = [
            el(30, "script", {}, txt(31, HOSTILE_SCRIPT)),
            el(32, "img", {"src": "/does-not-exist.png", "onerror": HOSTILE_ONERROR, "alt": "x"}),
            el(33, "a", {"href": "javascript:window.__pwned='href'", "id": "evil"}, txt(34, "x")),
        ]
    body = el(
        10,
        "body",
        {},
        el(11, "h1", {"id": "heading"}, txt(12, "Checkout")),
        el(13, "p", {"class": "lead"}, txt(14, "Review your basket and pay.")),
        el(15, "input", {"id": "email", "type": "email", "value": ""}),
        el(16, "input", {"id": "coupon", "name": "coupon", "type": "text", "value": ""}),
        el(17, "button", {"id": "pay", "type": "button"}, txt(18, "Pay now")),
        el(19, "div", {"id": "status"}),
        *extra,
    )
    head = el(
        4,
        "head",
        {},
        el(5, "title", {}, txt(6, "Checkout · Shop")),
        el(7, "style", {"_cssText": "body { font-family: sans-serif; margin: 24px; }"}),
    )
    html = el(3, "html", {"lang": "en"}, head, body)
    return {
        "type": 0,
        "childNodes": [{"type": 1, "name": "html", "publicId": "", "systemId": "", "id": 2}, html],
        "id": 1,
    }


def checkout_events(t0: int, *, hostile: bool = False, seconds: int = 20) -> list[dict[str, Any]]:
    """A 20 s visit: load, type an email, click Pay now at +8 s, see an error, click again."""
    inc = 3

    def move(ts: int, x: int, y: int) -> dict[str, Any]:
        pos = [{"x": x, "y": y, "id": 10, "timeOffset": 0}]
        return {"type": inc, "timestamp": ts, "data": {"source": 1, "positions": pos}}

    def click(ts: int, node: int) -> dict[str, Any]:
        data = {"source": 2, "type": 2, "id": node, "x": 60, "y": 200}
        return {"type": inc, "timestamp": ts, "data": data}

    def typed(ts: int, node: int, text: str) -> dict[str, Any]:
        data = {"source": 5, "text": text, "isChecked": False, "id": node}
        return {"type": inc, "timestamp": ts, "data": data}

    def status_text(ts: int, text: str, node: int) -> dict[str, Any]:
        data = {
            "source": 0,
            "texts": [],
            "attributes": [],
            "removes": [],
            "adds": [{"parentId": 19, "nextId": None, "node": txt(node, text)}],
        }
        return {"type": inc, "timestamp": ts, "data": data}

    return [
        {"type": 4, "timestamp": t0, "data": {"href": PAGE, "width": 1280, "height": 720}},
        {
            "type": 2,
            "timestamp": t0 + 1,
            "data": {"node": shop_dom(hostile=hostile), "initialOffset": {"top": 0, "left": 0}},
        },
        move(t0 + 1500, 200, 150),
        click(t0 + 3000, 15),
        typed(t0 + 3500, 15, "a"),
        typed(t0 + 4200, 15, "ana@example.com"),
        move(t0 + 6000, 80, 210),
        click(t0 + 8000, 17),
        status_text(t0 + 8150, "Payment failed: something went wrong", 40),
        move(t0 + 12_000, 90, 215),
        click(t0 + 15_000, 17),
        move(t0 + seconds * 1000, 100, 220),
    ]


def price_error(ts: int) -> dict[str, Any]:
    return {
        "kind": "error",
        "ts": ts,
        "type": "TypeError",
        "message": "Cannot read properties of undefined (reading 'price')",
        "stack": STACK,
        "url": PAGE,
        "filename": "https://shop.example.com/static/app.3f9a1c2b.js",
        "lineno": 120,
        "colno": 15,
    }


def orders_502(ts: int) -> dict[str, Any]:
    return {
        "kind": "network",
        "ts": ts,
        "method": "POST",
        "request_url": "https://shop.example.com/api/orders/1234",
        "status": 502,
        "duration_ms": 312.0,
        "url": PAGE,
        "message": "POST /api/orders/1234 → 502",
    }


def checkout_batch(
    session_id: str,
    seq: int,
    t0: int,
    events: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    *,
    user: dict[str, str] | None = None,
    site: str | None = None,
) -> dict[str, Any]:
    """One batch of the visit, as the shop's SDK (release shop@1.4.2, production) sends it."""
    session: dict[str, Any] = {
        "id": session_id,
        "started_at": t0,
        "anonymous_id": "anon-" + session_id[:8],
        "user_agent": (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36"
        ),
        "url": PAGE,
        "release": "shop@1.4.2",
        "environment": "production",
        "sdk": "retrospec.js/test",
    }
    if user:
        session["user"] = user
    body = envelope(session, seq, events=events, failures=failures)
    if site:
        body["site"] = site
    return body


def send_checkout_session(
    post: Post,
    key: str,
    *,
    t0: int | None = None,
    user: dict[str, str] | None = None,
    hostile: bool = False,
    network: bool = True,
) -> str:
    """One visit in two batches (like an SDK flushing twice); returns the session id."""
    t0 = t0 or now_ms() - 30_000
    sid = new_session_id()
    events = checkout_events(t0, hostile=hostile)
    first, second = events[:6], events[6:]
    failures = [price_error(t0 + 8100)]
    if network:
        failures.append(orders_502(t0 + 15_200))
    for seq, (evs, fails) in enumerate(((first, []), (second, failures))):
        res = post(f"/api/v1/ingest?key={key}", checkout_batch(sid, seq, t0, evs, fails, user=user))
        status = getattr(res, "status_code", None)
        assert status == 202, (status, getattr(res, "text", ""))
    return sid
