"""rrweb event builders, in the formats of rrweb 2.x (EventType, IncrementalSource, NodeType)."""

from __future__ import annotations

from typing import Any

PAGE = "https://shop.example.com/cart?coupon=SPRING"


def el(node_id: int, tag: str, attrs: dict[str, Any] | None = None, *children: Any) -> Any:
    """A serialized element node."""
    return {
        "type": 2,
        "tagName": tag,
        "attributes": attrs or {},
        "childNodes": list(children),
        "id": node_id,
    }


def txt(node_id: int, text: str) -> dict[str, Any]:
    """A serialized text node."""
    return {"type": 3, "textContent": text, "id": node_id}


def shop_dom() -> dict[str, Any]:
    """A cart page: heading, a button with nested text, a link, an email field, a cart row,
    an icon button with aria-label, a masked button."""
    body = el(
        5,
        "body",
        {},
        el(6, "h1", {}, txt(7, "Your cart")),
        el(
            10,
            "button",
            {"class": "btn primary", "type": "submit"},
            el(11, "span", {}, txt(12, " Pay  now ")),
        ),
        el(13, "a", {"href": "/checkout"}, txt(14, "Checkout")),
        el(15, "input", {"id": "email", "type": "email", "value": "bob@example.com"}),
        el(16, "div", {"class": "cart-item css-1x2y3z"}, txt(17, "Blue shoes")),
        el(18, "button", {"aria-label": "Close"}, el(19, "svg", {"viewBox": "0 0 8 8"})),
        el(20, "button", {"class": "rr-mask"}, txt(21, "*******")),
        el(22, "script", {}, txt(23, "var secret = 1;")),
    )
    html = el(
        3, "html", {"lang": "en"}, el(4, "head", {}, el(8, "style", {}, txt(9, "body{}"))), body
    )
    return {
        "type": 0,
        "childNodes": [
            {"type": 1, "name": "html", "publicId": "", "systemId": "", "id": 2},
            html,
        ],
        "id": 1,
    }


def meta(ts: int, href: str = PAGE) -> dict[str, Any]:
    return {"type": 4, "data": {"href": href, "width": 1280, "height": 800}, "timestamp": ts}


def snapshot(ts: int, dom: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": 2,
        "data": {"node": dom or shop_dom(), "initialOffset": {"top": 0, "left": 0}},
        "timestamp": ts,
    }


def inc(ts: int, source: int, **data: Any) -> dict[str, Any]:
    return {"type": 3, "data": {"source": source, **data}, "timestamp": ts}


def click(ts: int, node_id: int) -> dict[str, Any]:
    return inc(ts, 2, type=2, id=node_id, x=100, y=200, pointerType=0)


def move(ts: int, x: int = 10) -> dict[str, Any]:
    return inc(ts, 1, positions=[{"x": x, "y": 20, "id": 5, "timeOffset": -40}])


def typed(ts: int, node_id: int, text: str) -> dict[str, Any]:
    return inc(ts, 5, text=text, isChecked=False, userTriggered=True, id=node_id)


def mutation(ts: int, **data: Any) -> dict[str, Any]:
    return inc(ts, 0, **{"texts": [], "attributes": [], "removes": [], "adds": [], **data})


def custom(ts: int, tag: str, payload: Any) -> dict[str, Any]:
    return {"type": 5, "data": {"tag": tag, "payload": payload}, "timestamp": ts}


def page_load(ts: int, href: str = PAGE) -> list[dict[str, Any]]:
    """What rrweb records first on every page: meta, then the full snapshot."""
    return [meta(ts, href), snapshot(ts)]
