"""Ingest envelopes as the SDK posts them, and the failures that go in them.

`envelope` is the one shape every builder here fills in; `batch` and `cart_batch` are the two
ready-made batches the ingest, CLI and retention tests send; `error` and `network` build the
failures, with the stacks of one cart bug as different browsers and deploys report it.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from typing import Any

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"
LINUX_CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
SHORT_CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari"
)


def envelope(
    session: dict[str, Any],
    seq: int,
    *,
    events: list[dict[str, Any]] | None = None,
    failures: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ingest batch (schema v1) for session; events and failures are left out when None."""
    body: dict[str, Any] = {"v": 1, "session": session, "seq": seq}
    if events is not None:
        body["events"] = events
    if failures is not None:
        body["failures"] = failures
    return body


def batch(session_id: str | None = None, seq: int = 0, **extra: Any) -> dict[str, Any]:
    """A realistic batch: two rrweb events and one error."""
    session: dict[str, Any] = {
        "id": session_id or str(uuid.uuid4()),
        "user_agent": SHORT_CHROME_UA,
        "url": "https://shop.example/cart",
        "release": "1.4.2",
        "user": {"id": "u-42", "email": "ada@example.com"},
    }
    events = [
        {"type": 4, "data": {"href": "https://shop.example/cart"}, "timestamp": 1000},
        {"type": 2, "data": {"node": {"type": 0, "childNodes": []}}, "timestamp": 1001},
    ]
    failures = [
        {
            "kind": "error",
            "ts": 1500,
            "type": "TypeError",
            "message": "Cannot read properties of undefined (reading 'total')",
            "stack": "TypeError: x\n    at checkout (https://shop.example/app.js:1:2)",
        }
    ]
    body = envelope(session, seq, events=events, failures=failures)
    body.update(extra)
    return body


def cart_batch(
    session_id: str,
    seq: int = 0,
    *,
    t0: int | None = None,
    user: str = "u1",
    events: bool = True,
    failure: bool = True,
    message: str = "Cannot read properties of undefined (reading 'total')",
    pad: int = 0,
) -> dict[str, Any]:
    """One SDK batch: meta + full snapshot + a click on "Pay now" (seq 0), then a TypeError."""
    t0 = int(time.time() * 1000) if t0 is None else t0
    base = t0 + seq * 2000
    session: dict[str, Any] = {
        "id": session_id,
        "started_at": t0,
        "user_agent": LINUX_CHROME_UA,
        "url": "https://shop.example/cart",
        "release": "1.4.2",
        "user": {"id": user, "email": f"{user}@example.com"},
    }
    evs: list[dict[str, Any]] = []
    if events:
        if seq == 0:
            button = {
                "type": 2,
                "tagName": "button",
                "attributes": {"id": "pay"},
                "childNodes": [{"type": 3, "textContent": "Pay now", "id": 5}],
                "id": 4,
            }
            body_node = {
                "type": 2,
                "tagName": "body",
                "attributes": {},
                "childNodes": [button],
                "id": 3,
            }
            html = {"type": 2, "tagName": "html", "attributes": {}, "childNodes": [body_node]}
            evs += [
                {
                    "type": 4,
                    "data": {"href": "https://shop.example/cart", "width": 1280, "height": 720},
                    "timestamp": base,
                },
                {
                    "type": 2,
                    "data": {
                        "node": {"type": 0, "childNodes": [{**html, "id": 2}], "id": 1},
                        "initialOffset": {"left": 0, "top": 0},
                    },
                    "timestamp": base + 1,
                },
            ]
        evs.append(
            {
                "type": 3,
                "data": {"source": 2, "type": 2, "id": 4, "x": 10, "y": 10},
                "timestamp": base + 500,
            }
        )
        if pad:
            evs.append({"type": 5, "data": {"tag": "pad", "payload": "x" * pad}, "timestamp": base})
    failures: list[dict[str, Any]] = []
    if failure:
        failures = [
            {
                "kind": "error",
                "ts": base + 1500,
                "type": "TypeError",
                "message": message,
                "stack": "TypeError: x\n    at checkout (https://shop.example/app.3f9a1c2b.js:1:2)\n"
                "    at onClick (https://shop.example/app.3f9a1c2b.js:9:4)",
                "url": "https://shop.example/cart",
                "context": {"cart": 3},
                "tags": {"plan": "pro"},
            }
        ]
    return envelope(session, seq, events=evs, failures=failures)


# --- failures -----------------------------------------------------------------------------

# One bug (a cart line without a product), from two deploys and two browsers.
PRICE_CHROME = "Cannot read properties of undefined (reading 'price')"
PRICE_FIREFOX = 'can\'t access property "price", item.product is undefined'
CHROME_V1 = """TypeError: Cannot read properties of undefined (reading 'price')
    at lineTotal (https://shop.example.com/static/js/main.3f9a1c2b.js:2:104455)
    at Array.map (<anonymous>)
    at CartSummary (https://shop.example.com/static/js/main.3f9a1c2b.js:2:104301)
    at HTMLButtonElement.<anonymous> (https://shop.example.com/static/js/main.3f9a1c2b.js:2:9911)
    at async refreshCart (https://shop.example.com/static/js/main.3f9a1c2b.js:2:7720)"""
CHROME_V2 = (
    CHROME_V1.replace("3f9a1c2b", "7d8e9f00")
    .replace(":2:104", ":2:105")
    .replace(":2:9911", ":3:12")
)
FIREFOX_V1 = """lineTotal@https://shop.example.com/static/js/main.3f9a1c2b.js:2:104461
CartSummary@https://shop.example.com/static/js/main.3f9a1c2b.js:2:104310
bindCart/<@https://shop.example.com/static/js/main.3f9a1c2b.js:2:9920
async*refreshCart@https://shop.example.com/static/js/main.3f9a1c2b.js:2:7731
"""
FIREFOX_V2 = FIREFOX_V1.replace("3f9a1c2b", "7d8e9f00").replace(":2:1044", ":2:1051")
# A different bug in the same bundle: the coupon form.
COUPON_CHROME = """TypeError: Cannot read properties of null (reading 'value')
    at applyCoupon (https://shop.example.com/static/js/main.3f9a1c2b.js:2:88210)
    at HTMLFormElement.onSubmit (https://shop.example.com/static/js/main.3f9a1c2b.js:2:88002)"""
COUPON_MSG = "Cannot read properties of null (reading 'value')"


def error(
    stack: str | None = CHROME_V1,
    message: str | None = PRICE_CHROME,
    type_: str = "TypeError",
    ts: int = 1_732_560_005_000,
    **extra: Any,
) -> dict[str, Any]:
    """An `error` failure as the SDK sends it."""
    return {"kind": "error", "ts": ts, "type": type_, "message": message, "stack": stack, **extra}


def network(
    request_url: str, status: int, method: str = "GET", ts: int = 1_732_560_005_000
) -> dict[str, Any]:
    """A `network` failure as the SDK sends it."""
    return {
        "kind": "network",
        "ts": ts,
        "method": method,
        "request_url": request_url,
        "status": status,
        "duration_ms": 31.5,
    }


def heavy_failures(session_id: str, seq: int, n: int = 100) -> bytes:
    """The amplifying attack: a few KB of gzip that decode into n big, repetitive failures."""
    failures = [
        {
            "kind": "error",
            "ts": 1000 + i,
            "type": "TypeError",
            "message": f"boom {seq}.{i} " + "m" * 3000,
            "url": "https://shop.example/" + "u" * 3000,
            "request_url": "https://api.example/" + "r" * 3000,
            "stack": "TypeError: boom\n" + "    at f (https://shop.example/app.js:1:2)\n" * 50,
            "context": {"blob": "c" * 10_000},
        }
        for i in range(n)
    ]
    body = envelope({"id": session_id, "url": "https://shop.example/"}, seq, failures=failures)
    return gzip.compress(json.dumps(body).encode())
