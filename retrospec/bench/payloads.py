"""Realistic ingest bodies for the benchmarks: failure batches and ~9 KB replay chunks."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from retrospec.bench.loadgen import Body

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
_SID = "@@SID@@"
_SEQ = 987654321  # a number no real field uses, replaced by the sequence number


def _stack(fn: str, bundle: str, depth: int = 8) -> str:
    frames = [f"TypeError: Cannot read properties of undefined (reading '{fn}')"]
    names = ["renderCart", "useMemo", "commitRoot", "performWork", "flushSync", "dispatch"]
    for i in range(depth):
        name = fn if i == 0 else names[i % len(names)]
        frames.append(
            f"    at {name} (https://shop.example/static/js/{bundle}.3f9a1c2b.js"
            f":{40 + i}:{1200 + i})"
        )
    return "\n".join(frames)


def failure(i: int, ts: int) -> dict[str, Any]:
    """One failure; i picks one of a few dozen distinct bugs so clustering has real work."""
    bug = i % 24
    if bug % 4 == 3:
        return {
            "kind": "network",
            "ts": ts,
            "type": "HTTPError",
            "message": f"POST /api/cart/{1000 + i} failed with 500",
            "url": "https://shop.example/checkout",
            "method": "POST",
            "request_url": f"https://api.shop.example/api/v{bug}/cart/{1000 + i}",
            "status": 500 + bug % 4,
            "duration_ms": 212.5,
        }
    return {
        "kind": "error",
        "ts": ts,
        "type": "TypeError",
        "message": f"Cannot read properties of undefined (reading 'item{bug}')",
        "stack": _stack(f"item{bug}", f"main{bug}"),
        "url": "https://shop.example/checkout?step=2",
        "filename": f"https://shop.example/static/js/main{bug}.3f9a1c2b.js",
        "lineno": 40,
        "colno": 1200,
        "tags": {"feature": "checkout"},
    }


def _template(envelope: dict[str, Any], events: int) -> Body:
    envelope["session"]["id"] = _SID
    envelope["seq"] = _SEQ
    text = json.dumps(envelope, separators=(",", ":")).encode()
    prefix, rest = text.split(_SID.encode(), 1)
    middle, suffix = rest.split(str(_SEQ).encode(), 1)
    return Body(prefix=prefix, middle=middle, suffix=suffix, events=events)


def _session(now: int) -> dict[str, Any]:
    return {
        "id": _SID,
        "started_at": now - 60_000,
        "anonymous_id": "5b0f8a52-6f1d-4b0e-9a55-0f2f4b9b1c11",
        "user": {"id": "u-1842", "email": "ada@example.com"},
        "user_agent": USER_AGENT,
        "url": "https://shop.example/checkout",
        "release": "1.4.2",
        "environment": "production",
        "sdk": "retrospec.js/0.1.0",
    }


def failure_body(batch: int, *, offset: int = 0, one_bug: bool = False) -> Body:
    """A batch of `batch` failures (no replay events); `one_bug`: all the same bug (a loop)."""
    now = int(time.time() * 1000)
    env = {
        "v": 1,
        "session": _session(now),
        "seq": 0,
        "failures": [failure(offset + (0 if one_bug else i), now - 1000 + i) for i in range(batch)],
    }
    return _template(env, batch)


def rrweb_events(target_bytes: int, seed: int = 7) -> list[dict[str, Any]]:
    """Incremental rrweb events (mutations, mouse moves, input) adding up to ~target_bytes."""
    rng = random.Random(seed)
    ts = int(time.time() * 1000)
    events: list[dict[str, Any]] = []
    size = 2
    words = "cart checkout price total shipping address order item quantity discount".split()  # noqa: SIM905
    while size < target_bytes:
        ts += rng.randint(5, 120)
        pick = rng.random()
        if pick < 0.45:
            ev: dict[str, Any] = {
                "type": 3,
                "data": {
                    "source": 1,
                    "positions": [
                        {
                            "x": rng.randint(0, 1400),
                            "y": rng.randint(0, 900),
                            "id": rng.randint(1, 400),
                            "timeOffset": -k * 16,
                        }
                        for k in range(rng.randint(3, 10))
                    ],
                },
                "timestamp": ts,
            }
        elif pick < 0.8:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
            ev = {
                "type": 3,
                "data": {
                    "source": 0,
                    "texts": [{"id": rng.randint(1, 400), "value": text}],
                    "attributes": [
                        {
                            "id": rng.randint(1, 400),
                            "attributes": {"class": f"row row-{rng.randint(1, 9)}"},
                        }
                    ],
                    "removes": [],
                    "adds": [
                        {
                            "parentId": rng.randint(1, 400),
                            "nextId": None,
                            "node": {
                                "type": 2,
                                "tagName": "div",
                                "attributes": {"class": "price"},
                                "childNodes": [],
                                "id": rng.randint(400, 5000),
                            },
                        }
                    ],
                },
                "timestamp": ts,
            }
        elif pick < 0.95:
            ev = {
                "type": 3,
                "data": {
                    "source": 5,
                    "text": "*" * rng.randint(1, 12),
                    "isChecked": False,
                    "id": rng.randint(1, 400),
                },
                "timestamp": ts,
            }
        else:
            ev = {
                "type": 3,
                "data": {"source": 3, "id": 1, "x": 0, "y": rng.randint(0, 4000)},
                "timestamp": ts,
            }
        events.append(ev)
        size += len(json.dumps(ev, separators=(",", ":"))) + 1
    return events


def replay_body(chunk_bytes: int = 9000) -> Body:
    """A replay chunk batch of ~chunk_bytes of rrweb events and no failures."""
    now = int(time.time() * 1000)
    env = {"v": 1, "session": _session(now), "seq": 0, "events": rrweb_events(chunk_bytes)}
    return _template(env, 1)


def body_bytes(body: Body) -> int:
    """Size of one request body built from the template."""
    return len(body.prefix) + len(body.middle) + len(body.suffix) + 24
