"""Replay summary and markers: element labels, rage clicks, navigation, inputs, failures,
active time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrospec.replay.markers import FailureRow, failure_label, strip_url
from tests.support.replays import T0, Env, make_env, sid
from tests.support.rrweb import (
    PAGE,
    click,
    custom,
    el,
    meta,
    move,
    mutation,
    page_load,
    snapshot,
    txt,
    typed,
)

CART = "https://shop.example.com/cart"
CHECKOUT = "https://shop.example.com/checkout"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path / "data")
    yield e
    e.conn.close()


def test_click_labels_follow_the_dom_as_it_changes(env: Env) -> None:
    s = sid(100)
    events = [
        *page_load(T0),
        click(T0 + 100, 12),  # the text node inside <span> inside <button>
        click(T0 + 200, 14),
        click(T0 + 300, 19),  # the <svg> of an icon button
        click(T0 + 400, 16),
        click(T0 + 500, 21),  # masked text
        click(T0 + 600, 15),
        mutation(
            T0 + 700,
            texts=[{"id": 14, "value": "Go to checkout"}],
            adds=[
                # The child is listed before its parent: it waits until the parent exists.
                {"parentId": 30, "nextId": None, "node": txt(31, "Retry")},
                {"parentId": 5, "nextId": 6, "node": el(30, "button", {"id": "retry"})},
            ],
            removes=[{"parentId": 5, "id": 16}],
            attributes=[{"id": 18, "attributes": {"aria-label": None, "title": "Dismiss"}}],
        ),
        click(T0 + 800, 14),
        click(T0 + 900, 31),
        click(T0 + 1000, 16),  # removed: no longer on the page
        click(T0 + 1100, 18),
    ]
    env.send(s, 0, events)
    env.run()
    labels = [label for kind, label, _ in env.markers(s) if kind == "click"]
    assert labels == [
        'button "Pay now"',
        'link "Checkout"',
        'button "Close"',
        'div.cart-item "Blue shoes"',
        "button .rr-mask (masked)",
        "input #email",
        'link "Go to checkout"',
        'button "Retry"',
        "element",
        'button "Dismiss"',
    ]
    assert env.session(s)["clicks"] == 10


def test_a_new_page_resets_the_node_map(env: Env) -> None:
    s = sid(101)
    other = {
        "type": 0,
        "id": 1,
        "childNodes": [
            el(3, "html", {}, el(5, "body", {}, el(11, "a", {"href": "/"}, txt(12, "Home"))))
        ],
    }
    env.send(s, 0, [*page_load(T0), click(T0 + 100, 11)])
    env.send(s, 1, [meta(T0 + 5000, CHECKOUT), snapshot(T0 + 5000, other), click(T0 + 5100, 12)])
    env.run()
    assert [(k, lbl) for k, lbl, _ in env.markers(s)] == [
        ("navigation", CART),
        ("click", 'button "Pay now"'),
        ("navigation", CHECKOUT),
        ("click", 'link "Home"'),
    ]


def test_rage_clicks(env: Env) -> None:
    s = sid(102)
    burst = [click(T0 + 1000 + i * 250, 11) for i in range(4)]  # 4 clicks in 750 ms
    slow = [click(T0 + 5000 + i * 800, 11) for i in range(3)]  # 3 clicks, but over 1.6 s
    again = [click(T0 + 9000 + i * 100, 13) for i in range(3)]
    other = [click(T0 + 12_000, 11), click(T0 + 12_200, 13), click(T0 + 12_400, 11)]
    env.send(s, 0, [*page_load(T0), *burst, *slow, *again, *other])
    env.run()
    rage = [(label, offset) for kind, label, offset in env.markers(s) if kind == "rage_click"]
    assert rage == [('button "Pay now"', 1000), ('link "Checkout"', 9000)]
    row = env.session(s)
    assert row["rage_clicks"] == 2 and row["clicks"] == 13


def test_navigation_pages_and_inputs(env: Env) -> None:
    s = sid(103)
    env.send(
        s,
        0,
        [
            *page_load(T0),
            typed(T0 + 100, 15, "b"),
            typed(T0 + 200, 15, "bo"),
            typed(T0 + 300, 15, "bob@secret.example"),
            click(T0 + 400, 10),
            typed(T0 + 500, 15, "bob@secret.example!"),
            custom(T0 + 1000, "navigation", {"href": CHECKOUT + "?step=2&token=abc"}),
            meta(T0 + 1000, CHECKOUT + "?step=2&token=abc"),  # the SDK echo: one marker only
            custom(T0 + 2000, "navigation", {"href": "https://shop.example.com/app#/orders/7?x=1"}),
            custom(T0 + 3000, "navigation", {"href": CART + "?coupon=B"}),
            custom(T0 + 3500, "other-tag", {"href": "https://elsewhere.example/"}),
        ],
    )
    env.run()
    markers = [(k, lbl, off) for k, lbl, off in env.markers(s)]
    assert markers == [
        ("navigation", CART, 0),
        ("input", "input #email", 100),
        ("click", 'button "Pay now"', 400),
        ("input", "input #email", 500),
        ("navigation", CHECKOUT, 1000),
        ("navigation", "https://shop.example.com/app#/orders/7", 2000),
        ("navigation", CART, 3000),
    ]
    row = env.session(s)
    assert json.loads(row["pages"]) == [CART, CHECKOUT, "https://shop.example.com/app#/orders/7"]
    stored = json.dumps([list(r) for r in env.conn.execute("SELECT * FROM replay_markers")])
    assert "secret" not in stored and "bob@" not in stored and "token" not in stored


def sdk_failure(ts: int, type_: str, message: str) -> dict[str, object]:
    return {"kind": "error", "type": type_, "message": message, "ts": ts}


def test_failure_markers_and_offsets(env: Env) -> None:
    s = sid(104)
    env.send(
        s,
        0,
        [
            *page_load(T0),
            click(T0 + 3900, 11),
            # The SDK's copies of failures, as assets/sdk/main.js records them.
            custom(
                T0 + 4001,
                "retrospec.failure",
                sdk_failure(T0 + 4000, "TypeError", "x is undefined"),
            ),
            custom(
                T0 + 9001, "retrospec.failure", sdk_failure(T0 + 9000, "RangeError", "lost row")
            ),
            custom(
                T0 + 9500,
                "retrospec.failure",
                {
                    "kind": "network",
                    "method": "PUT",
                    "request_url": "https://shop.example.com/api/cart/3",
                    "status": 409,
                    "ts": T0 + 9499,
                },
            ),
        ],
        [
            {
                "kind": "error",
                "ts": T0 + 4000,
                "type": "TypeError",
                "message": "x is undefined\n  more",
            },
            {"kind": "console", "ts": T0 - 500, "message": "warming up"},
            {
                "kind": "network",
                "ts": T0 + 6000,
                "method": "GET",
                "request_url": "https://api.stripe.example/v1/charges?key=1",
                "status": None,
            },
        ],
    )
    env.run()
    assert env.markers(s) == [
        ("failure", "warming up", 0),
        ("navigation", CART, 0),
        ("click", 'button "Pay now"', 3900),
        ("failure", "TypeError: x is undefined more", 4000),
        ("failure", "GET api.stripe.example/v1/charges → failed", 6000),
        ("failure", "RangeError: lost row", 9000),  # only the SDK events know these two
        ("failure", "PUT /api/cart/3 → 409", 9499),
    ]
    stored = env.conn.execute(
        "SELECT kind, offset_ms, failure_id FROM replay_markers WHERE kind = 'failure' ORDER BY ts"
    ).fetchall()
    assert [r[1] for r in stored] == [0, 4000, 6000, 9000, 9499]
    assert [r[2] is None for r in stored] == [False, False, False, True, True]
    # Its failures row arrives later, in a failure-only batch: the marker now carries its id.
    env.send(
        s,
        1,
        None,
        [{"kind": "error", "ts": T0 + 9001, "type": "RangeError", "message": "lost row"}],
    )
    assert env.markers(s)[-2:] == [
        ("failure", "RangeError: lost row", 9001),
        ("failure", "PUT /api/cart/3 → 409", 9499),
    ]


def test_active_time_caps_idle_gaps(env: Env) -> None:
    s = sid(105)
    env.send(
        s,
        0,
        [
            *page_load(T0),
            move(T0 + 1000),
            move(T0 + 2000),
            mutation(T0 + 30_000, texts=[{"id": 7, "value": "Still there?"}]),  # not activity
            move(T0 + 62_000),  # a 60 s pause counts as 5 s
            click(T0 + 63_000, 11),
        ],
    )
    env.run()
    row = env.session(s)
    assert row["active_ms"] == 1000 + 5000 + 1000
    assert row["duration_ms"] == 63_000


def test_strip_url_and_failure_labels() -> None:
    assert strip_url(PAGE) == CART
    assert strip_url("https://a.example/p?q=1#frag") == "https://a.example/p"
    assert strip_url("https://a.example#!/x?y=1") == "https://a.example/#!/x"
    net = FailureRow(1, "network", None, None, T0, "DELETE", "/api/items/4", 404)
    assert failure_label(net, "shop.example.com") == "DELETE /api/items/4 → 404"
    assert failure_label(FailureRow(2, "error", "Error", None, T0)) == "Error"
    long = FailureRow(3, "error", "Error", "x" * 500, T0)
    assert len(failure_label(long)) == 160


def test_step_events_without_a_dom_become_markers(env: Env) -> None:
    # What the Sentry adapter sends for an error without a replay: breadcrumbs as steps.
    s = sid(105)
    env.send(
        s,
        0,
        [
            custom(T0, "retrospec.step", {"kind": "navigation", "label": CART + "?coupon=A"}),
            custom(T0 + 100, "retrospec.step", {"kind": "click", "label": "button#pay"}),
            custom(T0 + 200, "retrospec.step", {"kind": "input", "label": "input#email"}),
            custom(T0 + 300, "retrospec.step", {"kind": "teleport", "label": "nowhere"}),
            custom(T0 + 400, "retrospec.step", {"kind": "click"}),
        ],
    )
    env.run()
    assert env.markers(s) == [
        ("navigation", CART, 0),
        ("click", "button#pay", 100),
        ("input", "input#email", 200),
    ]
    row = env.session(s)
    assert row["replay_status"] == "no_snapshot" and row["clicks"] == 1
