"""Server-side privacy rules (ingest.scrub): query strings out of URLs, secrets out of text."""

from __future__ import annotations

import json
import time

import pytest

from retrospec.ingest.scrub import (
    FILTERED,
    is_sensitive_key,
    scrub_tags,
    scrub_text,
    scrub_value,
    strip_event_urls,
    strip_url,
    strip_urls_in_text,
)


@pytest.mark.parametrize(
    ("url", "keep", "expected"),
    [
        ("https://shop.example/cart?token=abc&page=2", (), "https://shop.example/cart"),
        (
            "https://shop.example/cart?token=abc&page=2",
            ("page",),
            "https://shop.example/cart?page=2",
        ),
        ("https://shop.example/#/cart?x=1", (), "https://shop.example/#/cart"),  # a route stays
        ("https://shop.example/cb#access_token=abc&x=1", (), "https://shop.example/cb"),
        ("https://bob:hunter2@shop.example/a?x", (), f"https://{FILTERED}@shop.example/a"),
        ("/relative/path?q=1#top", (), "/relative/path#top"),
    ],
)
def test_strip_url(url: str, keep: tuple[str, ...], expected: str) -> None:
    assert strip_url(url, frozenset(keep)) == expected


def test_urls_inside_stacks_keep_their_line_and_column() -> None:
    stack = (
        "TypeError: x\n"
        "    at pay (https://shop.example/app.js?v=3&token=abc:10:5)\n"
        "    at g@https://shop.example/b.js?k=1:2:3\n"
        "    at https://shop.example/c.js:1:2"
    )
    assert strip_urls_in_text(stack) == (
        "TypeError: x\n"
        "    at pay (https://shop.example/app.js:10:5)\n"
        "    at g@https://shop.example/b.js:2:3\n"
        "    at https://shop.example/c.js:1:2"
    )


def test_secrets_are_filtered_the_way_sentry_does_it() -> None:
    text = (
        "login failed password=hunter2; Authorization: Bearer abcdefghijklmnop; "
        'card 4111 1111 1111 1111; {"api_key": "k-123"}; ts 1732560000123'
    )
    out = scrub_text(text)
    for secret in ("hunter2", "abcdefghijklmnop", "4111 1111", "k-123"):
        assert secret not in out
    assert "ts 1732560000123" in out  # a timestamp is not a card
    # Ordinary wording that mentions a key word is left alone.
    assert scrub_text("Invalid token: expired") == "Invalid token: expired"
    assert scrub_text("Unexpected token identifier") == "Unexpected token identifier"


def test_structured_values_lose_secret_fields() -> None:
    value = {
        "headers": {"Authorization": "Bearer xyz", "Accept": "json"},
        "user": {"password": "p", "name": "ada"},
        "urls": ["https://a.example/b?c=d"],
        "note": "card 5500-0000-0000-0004",
    }
    assert scrub_value(value) == {
        "headers": {"Authorization": FILTERED, "Accept": "json"},
        "user": {"password": FILTERED, "name": "ada"},
        "urls": ["https://a.example/b"],
        "note": f"card {FILTERED}",
    }
    assert scrub_tags({"api_key": "x", "plan": "pro"}) == {"api_key": FILTERED, "plan": "pro"}
    assert is_sensitive_key("X-Api-Key") and is_sensitive_key("private_key")
    assert not is_sensitive_key("plan")


def test_recorded_dom_urls_are_stripped_without_decoding_the_events() -> None:
    events = [
        {"type": 4, "data": {"href": "https://a.example/p?secret=1", "width": 1}},
        {
            "type": 2,
            "data": {"attributes": {"href": "/x?t=1", "class": "q?x", "srcset": "a.png?k=1 1x"}},
        },
        {"type": 5, "data": {"payload": {"url": "https://a.example/\u003fq=1"}}},
    ]
    for raw in (json.dumps(events), json.dumps(events, separators=(",", ":"))):
        out = json.loads(strip_event_urls(raw.encode()))
        assert out[0]["data"]["href"] == "https://a.example/p"
        assert out[1]["data"]["attributes"] == {"href": "/x", "class": "q?x", "srcset": "a.png 1x"}
        assert out[2]["data"]["payload"]["url"] == "https://a.example/"
    clean = b'[{"type":3,"data":{"x":1}}]'
    assert strip_event_urls(clean) is clean  # nothing to do: the very same bytes


@pytest.mark.parametrize(
    "text",
    ["c" * 50_000, "a.b-" * 12_500, "password" * 6_000, "token:" * 8_000, "4111 " * 10_000],
)
def test_scrubbing_is_linear_on_hostile_text(text: str) -> None:
    # A regex like [\w]*password[\w]* backtracks quadratically: 50 KB would take minutes.
    started = time.perf_counter()
    scrub_text(text)
    assert time.perf_counter() - started < 1.0
