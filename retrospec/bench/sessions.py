"""Recorded sessions of any length, as rrweb 2 would record them, for the replay benchmark.

A product page (a header, a clock, a table of rows) visited by a user who moves the mouse,
scrolls, clicks and types; about 280 events and ~80 kB of raw JSON per minute, like the sessions
issue 16 measured. In continuous mode the SDK takes a full snapshot every `checkout_ms`
(rrweb's checkoutEveryNms); checkout_ms=None records like an SDK without checkouts.
"""

from __future__ import annotations

import random
from typing import Any

PAGE = "https://shop.example/catalogue"
ROWS = 120
_WORDS = "cart checkout price total shipping address order item quantity discount".split()  # noqa: SIM905
# Node ids: 1 document, 2 doctype, 3 html, 4 head, 5 style, 6 style text, 7 body, 8 h1, 9 h1 text,
# 10 clock, 11 clock text, 12 input, 13 table; row n: 100 + 3n (tr), +1 (td), +2 (text).
CLOCK_TEXT = 11
INPUT = 12


def _el(node_id: int, tag: str, attrs: dict[str, Any], *children: Any) -> dict[str, Any]:
    return {
        "type": 2,
        "tagName": tag,
        "attributes": attrs,
        "childNodes": list(children),
        "id": node_id,
    }


def _txt(node_id: int, text: str) -> dict[str, Any]:
    return {"type": 3, "textContent": text, "id": node_id}


def row_text(n: int, version: int) -> str:
    """What row n says after `version` edits."""
    return f"{_WORDS[n % len(_WORDS)]} #{n} rev {version}: {n * 7 + version} units"


def page_dom(clock: str, rows: list[int], checkpoint: int) -> dict[str, Any]:
    """The page as a full snapshot serialises it (rows[n] = edits of row n so far)."""
    style = "body{font:14px sans-serif;margin:24px}td{padding:4px 8px}h1{font-size:20px}" * 8
    table = _el(
        13,
        "table",
        {"class": "catalogue"},
        *[
            _el(100 + 3 * n, "tr", {"class": f"row r{n}"}, _el(101 + 3 * n, "td", {}))
            for n in range(ROWS)
        ],
    )
    for n, tr in enumerate(table["childNodes"]):
        tr["childNodes"][0]["childNodes"].append(_txt(102 + 3 * n, row_text(n, rows[n])))
    body = _el(
        7,
        "body",
        {"data-checkpoint": str(checkpoint)},
        _el(8, "h1", {}, _txt(9, "Catalogue")),
        _el(10, "p", {"id": "clock"}, _txt(CLOCK_TEXT, clock)),
        _el(INPUT, "input", {"id": "search", "value": ""}),
        table,
    )
    html = _el(3, "html", {"lang": "en"}, _el(4, "head", {}, _el(5, "style", {}, _txt(6, style))))
    html["childNodes"].append(body)
    return {
        "type": 0,
        "childNodes": [{"type": 1, "name": "html", "publicId": "", "systemId": "", "id": 2}, html],
        "id": 1,
    }


def clock_text(second: int) -> str:
    """The page clock's text at a second of the session (what a replay should show then)."""
    return f"Session time {second // 60}:{second % 60:02d}"


def recorded_session(
    minutes: float, start_ts: int, *, checkout_ms: int | None = 120_000, seed: int = 16
) -> list[dict[str, Any]]:
    """The rrweb events of a session `minutes` long starting at start_ts, in time order."""
    rng = random.Random(seed)
    end = start_ts + int(minutes * 60_000)
    rows = [0] * ROWS
    events: list[dict[str, Any]] = []
    checkpoint = 0

    def snapshot(ts: int, second: int) -> None:
        nonlocal checkpoint
        events.append(
            {"type": 4, "data": {"href": PAGE, "width": 1280, "height": 800}, "timestamp": ts}
        )
        dom = page_dom(clock_text(second), rows, checkpoint)
        events.append(
            {
                "type": 2,
                "data": {"node": dom, "initialOffset": {"left": 0, "top": 0}},
                "timestamp": ts,
            }
        )
        checkpoint += 1

    snapshot(start_ts, 0)
    next_checkout = start_ts + checkout_ms if checkout_ms else end + 1
    second = 0
    ts = start_ts
    while True:
        second += 1
        tick = start_ts + second * 1000
        if tick > end:
            break
        # Mouse movement in the second before the tick, batched as rrweb does (~4 per second).
        for k in range(4):
            at = tick - 1000 + 120 + k * 220 + rng.randint(0, 40)
            positions = [
                {
                    "x": rng.randint(0, 1280),
                    "y": rng.randint(0, 800),
                    "id": 100 + 3 * rng.randrange(ROWS),
                    "timeOffset": -j * 50,
                }
                for j in range(rng.randint(2, 5))
            ]
            events.append(
                {"type": 3, "data": {"source": 1, "positions": positions}, "timestamp": at}
            )
        # The clock ticks every second: a text mutation.
        events.append(
            {
                "type": 3,
                "data": {
                    "source": 0,
                    "texts": [{"id": CLOCK_TEXT, "value": clock_text(second)}],
                    "attributes": [],
                    "removes": [],
                    "adds": [],
                },
                "timestamp": tick,
            }
        )
        if second % 3 == 0:  # a row changes
            n = rng.randrange(ROWS)
            rows[n] += 1
            events.append(
                {
                    "type": 3,
                    "data": {
                        "source": 0,
                        "texts": [{"id": 102 + 3 * n, "value": row_text(n, rows[n])}],
                        "attributes": [
                            {"id": 100 + 3 * n, "attributes": {"class": f"row r{n} hot"}}
                        ],
                        "removes": [],
                        "adds": [],
                    },
                    "timestamp": tick + 5,
                }
            )
        if second % 10 == 0:  # a click on a row
            node = 101 + 3 * rng.randrange(ROWS)
            for kind in (1, 0, 2):  # mousedown, mouseup, click
                events.append(
                    {
                        "type": 3,
                        "data": {"source": 2, "type": kind, "id": node, "x": 300, "y": 200},
                        "timestamp": tick + 20 + kind,
                    }
                )
        if second % 15 == 0:  # a scroll
            events.append(
                {
                    "type": 3,
                    "data": {"source": 3, "id": 1, "x": 0, "y": rng.randint(0, 2400)},
                    "timestamp": tick + 40,
                }
            )
        if second % 30 == 0:  # typing in the search box
            text = rng.choice(_WORDS)
            events.append(
                {
                    "type": 3,
                    "data": {"source": 5, "text": text, "isChecked": False, "id": INPUT},
                    "timestamp": tick + 60,
                }
            )
        if tick >= next_checkout:
            snapshot(tick + 100, second)
            next_checkout += checkout_ms or 0
        ts = tick
    events.sort(key=lambda e: int(e["timestamp"]))
    del ts
    return events


def chunked(events: list[dict[str, Any]], every_ms: int = 5_000) -> list[list[dict[str, Any]]]:
    """Events split into the batches an SDK flushing every `every_ms` would send."""
    out: list[list[dict[str, Any]]] = []
    if not events:
        return out
    first = int(events[0]["timestamp"])
    for event in events:
        slot = (int(event["timestamp"]) - first) // every_ms
        while len(out) <= slot:
            out.append([])
        out[slot].append(event)
    return [c for c in out if c]
