"""The recorded Sentry SDK envelopes (tests/fixtures/sentry), picked by content, and a serializer
for envelopes the tests take apart and put back together."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.support.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "sentry"


@dataclass(frozen=True)
class Captured:
    """One recorded request: file stem, headers (lower-case names), body, its items."""

    name: str
    headers: dict[str, str]
    body: bytes

    @property
    def header(self) -> dict[str, Any]:
        return dict(json.loads(self.body.split(b"\n", 1)[0]))

    @property
    def items(self) -> list[tuple[dict[str, Any], bytes]]:
        return split_items(self.body)

    @property
    def types(self) -> list[str]:
        return [h["type"] for h, _ in self.items]

    def json_item(self, kind: str) -> dict[str, Any]:
        return dict(json.loads(next(p for h, p in self.items if h["type"] == kind)))


def split_items(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """(item header, payload) pairs of an envelope, honouring `length`."""
    items: list[tuple[dict[str, Any], bytes]] = []
    pos = body.index(b"\n") + 1
    while pos < len(body):
        end = body.find(b"\n", pos)
        end = len(body) if end < 0 else end
        header = json.loads(body[pos:end])
        start = end + 1
        if "length" in header:
            stop = start + header["length"]
            pos = stop + 1
        else:
            nxt = body.find(b"\n", start)
            stop = len(body) if nxt < 0 else nxt
            pos = stop + 1
        items.append((header, body[start:stop]))
    return items


def serialize(header: dict[str, Any], items: list[tuple[dict[str, Any], bytes]]) -> bytes:
    """An envelope the way the SDK writes it (no newline at the end)."""
    parts = [json.dumps(header, separators=(",", ":")).encode()]
    for item_header, payload in items:
        parts.append(b"\n" + json.dumps(item_header, separators=(",", ":")).encode())
        parts.append(b"\n" + payload)
    return b"".join(parts)


@cache
def captured() -> tuple[Captured, ...]:
    """Every recorded request, in the order the SDK sent them."""
    out = []
    for path in sorted(FIXTURES.glob("*.bin")):
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        headers = {k.lower(): v for k, v in meta["headers"].items()}
        out.append(Captured(path.stem, headers, path.read_bytes()))
    return tuple(out)


def pick(kind: str, where: Callable[[Captured], bool] = lambda c: True) -> Captured:
    """The first recorded envelope carrying an item of `kind` that satisfies `where`."""
    for c in captured():
        if kind in c.types and where(c):
            return c
    raise LookupError(f"no recorded envelope with a {kind} item matching the condition")


def compressed(c: Captured) -> bool:
    """Whether a replay envelope's recording is zlib-compressed (then it has no Content-Type)."""
    payload = next(p for h, p in c.items if h["type"] == "replay_recording")
    return payload.split(b"\n", 1)[1][:1] == b"x"


def mechanism(c: Captured) -> str:
    """The mechanism type of a recorded event's main exception."""
    values = c.json_item("event").get("exception", {}).get("values", [])
    return str(values[-1].get("mechanism", {}).get("type", "")) if values else ""
