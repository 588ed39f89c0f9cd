"""Sentry envelopes on the wire: a streaming reader with bounded lines and items, and capped
decoders for the request body's Content-Encoding.

Format (what the SDKs write): a header line of JSON, then items, each a header line (`type`,
optional `length`) and a payload. A payload with `length` is exactly that many bytes (it may hold
newlines: zlib-compressed replay recordings do) and may be followed by one newline; a payload
without `length` runs to the next newline or the end of the body. The body need not end with a
newline. The reader is fed the body as it arrives and never holds more than one line or item
beyond what it keeps.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from retrospec.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_LINE_BYTES = 65_536  # one envelope or item header line
MAX_ITEMS = 100
_DECODE = msgspec.json.Decoder()


@dataclass(slots=True)
class Item:
    """One envelope item: its header, and its payload when the reader was asked to keep it."""

    type: str
    header: dict[str, Any]
    size: int
    payload: bytes | None = None


@dataclass(slots=True)
class Parsed:
    """A whole envelope: header and items, in order."""

    header: dict[str, Any]
    items: list[Item] = field(default_factory=list)


def _json_object(line: bytes | bytearray, what: str) -> dict[str, Any]:
    text = bytes(line).strip()
    if not text:
        return {}
    try:
        value = _DECODE.decode(text)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed {what}: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"malformed {what}: not a JSON object")
    return value


class EnvelopeReader:
    """Incremental envelope parser: feed() bytes as they arrive, then close().

    Payloads of item types in `keep` are kept (each at most `max_item` bytes); other items are
    skipped as they stream past, only their size is counted. Header lines are at most
    `max_line` bytes. Over a limit: 413 for an item, 400 for a line; malformed: 400.
    """

    def __init__(
        self,
        keep: frozenset[str],
        *,
        max_item: int,
        max_line: int = MAX_LINE_BYTES,
        max_items: int = MAX_ITEMS,
    ) -> None:
        self.keep = keep
        self.max_item = max_item
        self.max_line = max_line
        self.max_items = max_items
        self.header: dict[str, Any] | None = None
        self.items: list[Item] = []
        self._buf = bytearray()
        self._state = "header"
        self._item: Item | None = None
        self._remaining = 0  # bytes left of a length-prefixed payload
        self._parts: list[bytes] = []
        self.closed = False

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body."""
        if data:
            self._buf += data
            self._run()

    def _line(self) -> bytes | None:
        """The next whole line (without its newline), or None until one has arrived."""
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > self.max_line:
                raise BadRequest(f"an envelope header line is over {self.max_line} bytes")
            return None
        if end > self.max_line:
            raise BadRequest(f"an envelope header line is over {self.max_line} bytes")
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line

    def _run(self) -> None:
        while True:
            state = self._state
            if state == "header":
                line = self._line()
                if line is None:
                    return
                self.header = _json_object(line, "envelope header")
                self._state = "item"
            elif state == "item":
                line = self._line()
                if line is None:
                    return
                if line.strip():
                    self._start_item(line)
            elif state == "sized":
                take = min(self._remaining, len(self._buf))
                if take:
                    self._collect(bytes(self._buf[:take]))
                    del self._buf[:take]
                    self._remaining -= take
                if self._remaining:
                    return
                self._state = "after"
            elif state == "after":
                if not self._buf:
                    return
                if self._buf[0] == 0x0A:  # the optional newline after a sized payload
                    del self._buf[:1]
                self._finish_item()
            else:  # "line": a payload that runs to the next newline
                end = self._buf.find(b"\n")
                if end < 0:
                    self._check_line_payload(len(self._buf))
                    return
                self._check_line_payload(end)
                self._collect(bytes(self._buf[:end]))
                del self._buf[: end + 1]
                self._finish_item()

    def _start_item(self, line: bytes) -> None:
        header = _json_object(line, "item header")
        kind = header.get("type")
        if not isinstance(kind, str) or not kind:
            raise BadRequest("an envelope item header has no `type`")
        if len(self.items) >= self.max_items:
            raise BadRequest(f"an envelope may carry at most {self.max_items} items")
        length = header.get("length")
        self._item = Item(type=kind, header=header, size=0)
        self._parts = []
        if length is None:
            self._state = "line"
            return
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise BadRequest(f"item `{kind}` has an invalid length")
        if kind in self.keep and length > self.max_item:
            raise PayloadTooLarge(f"item `{kind}` is over the {self.max_item}-byte limit")
        self._remaining = length
        self._state = "sized"

    def _check_line_payload(self, size: int) -> None:
        item = self._item
        assert item is not None
        if item.type in self.keep and item.size + size > self.max_item:
            raise PayloadTooLarge(f"item `{item.type}` is over the {self.max_item}-byte limit")

    def _collect(self, data: bytes) -> None:
        item = self._item
        assert item is not None
        item.size += len(data)
        if item.type in self.keep:
            self._parts.append(data)

    def _finish_item(self) -> None:
        item = self._item
        assert item is not None
        if item.type in self.keep:
            item.payload = b"".join(self._parts)
        self.items.append(item)
        self._item = None
        self._parts = []
        self._state = "item"

    def close(self) -> Parsed:
        """The end of the body: finish the last item or refuse a truncated one."""
        self.closed = True
        state = self._state
        if state == "header":
            if not self._buf.strip():
                raise BadRequest("empty envelope")
            if len(self._buf) > self.max_line:
                raise BadRequest(f"an envelope header line is over {self.max_line} bytes")
            self.header = _json_object(self._buf, "envelope header")
        elif state == "item":
            rest = bytes(self._buf)
            if rest.strip():
                # The last item header with no payload at all: fine only if nothing was due.
                self._start_item(rest)
                self._buf.clear()
                if self._state == "sized" and self._remaining:
                    raise BadRequest(
                        f"item `{self._item.type if self._item else '?'}` is truncated"
                    )
                self._finish_item()
        elif state == "sized":
            item = self._item
            assert item is not None
            due = item.size + self._remaining
            raise BadRequest(f"item `{item.type}` is truncated: {item.size} of {due} bytes")
        elif state == "after":
            self._finish_item()
        else:  # "line": the body ended the payload
            self._check_line_payload(len(self._buf))
            self._collect(bytes(self._buf))
            self._buf.clear()
            self._finish_item()
        assert self.header is not None
        return Parsed(self.header, self.items)


def parse(body: bytes, keep: frozenset[str], *, max_item: int) -> Parsed:
    """Parse a whole envelope held in memory (tests, tools)."""
    reader = EnvelopeReader(keep, max_item=max_item)
    reader.feed(body)
    return reader.close()


# --- Content-Encoding ------------------------------------------------------------------------


class BodyDecoder(Protocol):
    """Decodes a body as it arrives, never producing more than its limit."""

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes for the next piece of the body."""

    def finish(self) -> bytes:
        """Whatever is left at the end of the body; refuses a truncated stream."""


class _Identity:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0

    def decode(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(f"body is over the {self.limit}-byte decoded limit")
        return data

    def finish(self) -> bytes:
        return b""


class _Zlib:
    """gzip, zlib or raw deflate (`wbits` as zlib takes it; None: decided by the first bytes)."""

    def __init__(self, limit: int, wbits: int | None, name: str) -> None:
        self.limit = limit
        self.name = name
        self.size = 0
        self._wbits = wbits
        self._obj: Any = None if wbits is None else zlib.decompressobj(wbits=wbits)
        self._head = b""

    def _out(self, data: bytes) -> bytes:
        obj = self._obj
        out: list[bytes] = []
        try:
            while data:
                room = self.limit + 1 - self.size
                chunk = obj.decompress(data, room)
                self.size += len(chunk)
                if self.size > self.limit:
                    raise PayloadTooLarge(f"body is over {self.limit} bytes once decompressed")
                out.append(chunk)
                if obj.eof:
                    break
                data = obj.unconsumed_tail
        except zlib.error as exc:
            raise BadRequest(f"body is not valid {self.name}: {exc}") from None
        return b"".join(out)

    def decode(self, data: bytes) -> bytes:
        if self._obj is None:
            # HTTP `deflate` is zlib-wrapped, but some clients send raw deflate: look at the
            # first two bytes (a zlib header is a multiple of 31 with method 8).
            self._head += data
            if len(self._head) < 2:
                return b""
            cmf, flg = self._head[0], self._head[1]
            wrapped = cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
            self._obj = zlib.decompressobj(wbits=15 if wrapped else -15)
            data, self._head = self._head, b""
        return self._out(data)

    def finish(self) -> bytes:
        if self._obj is None:
            if self._head:
                raise BadRequest(f"body is not valid {self.name}")
            return b""
        if not self._obj.eof:
            raise BadRequest(f"{self.name} body is truncated")
        return b""


class _Brotli:
    def __init__(self, limit: int) -> None:
        import brotli  # optional: `pip install retrospec[brotli]`

        self.limit = limit
        self.size = 0
        self._brotli = brotli
        self._obj = brotli.Decompressor()

    def _take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"body is over {self.limit} bytes once decompressed")

    def decode(self, data: bytes) -> bytes:
        out: list[bytes] = []
        try:
            # The output limit keeps a brotli bomb from growing past the cap in one call.
            chunk = self._obj.process(data, output_buffer_limit=self.limit + 1)
            self._take(chunk)
            out.append(chunk)
            while not self._obj.can_accept_more_data():
                chunk = self._obj.process(b"", output_buffer_limit=self.limit + 1)
                self._take(chunk)
                out.append(chunk)
        except self._brotli.error as exc:
            raise BadRequest(f"body is not valid brotli: {exc}") from None
        return b"".join(out)

    def finish(self) -> bytes:
        if not self._obj.is_finished():
            raise BadRequest("brotli body is truncated")
        return b""


def body_decoder(encoding: str, limit: int) -> BodyDecoder:
    """A capped decoder for a Content-Encoding (identity, gzip, deflate, br); else 415."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return _Identity(limit)
    if name in ("gzip", "x-gzip"):
        return _Zlib(limit, 31, "gzip")
    if name == "deflate":
        return _Zlib(limit, None, "deflate")
    if name == "br":
        try:
            return _Brotli(limit)
        except ImportError:
            raise UnsupportedMediaType(
                "content encoding 'br' needs the brotli package: pip install 'retrospec[brotli]'"
            ) from None
    raise UnsupportedMediaType(
        f"content encoding {encoding!r} is not supported; use gzip, deflate or br"
    )
