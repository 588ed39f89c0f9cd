"""The streaming envelope reader and the capped Content-Encoding decoders."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from retrospec.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from retrospec.ingest.sentry.envelope import EnvelopeReader, Parsed, body_decoder, parse
from tests.support.sentry_fixtures import captured, split_items

KEEP = frozenset({"event", "replay_event", "replay_recording"})


def feed_in_pieces(body: bytes, size: int, *, max_item: int = 1 << 20) -> Parsed:
    reader = EnvelopeReader(KEEP, max_item=max_item)
    for i in range(0, len(body), size):
        reader.feed(body[i : i + size])
    return reader.close()


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_every_recorded_envelope_parses_the_same_in_any_pieces(size: int) -> None:
    for c in captured():
        parsed = feed_in_pieces(c.body, size)
        assert parsed.header == c.header
        expected = split_items(c.body)
        assert [i.type for i in parsed.items] == [h["type"] for h, _ in expected]
        for item, (_header, payload) in zip(parsed.items, expected, strict=True):
            assert item.size == len(payload)
            assert item.payload == (payload if item.type in KEEP else None)


def test_a_sized_payload_may_hold_newlines_and_end_the_body_with_one() -> None:
    payload = b'{"segment_id":0}\nx\x9c\n\n\n'
    body = b'{"event_id":"a"}\n{"type":"replay_recording","length":%d}\n' % len(payload) + payload
    for extra in (b"", b"\n"):
        parsed = parse(body + extra, KEEP, max_item=1000)
        assert [i.payload for i in parsed.items] == [payload]


def test_line_payloads_run_to_the_newline_or_the_end() -> None:
    body = (
        b'{}\n{"type":"event"}\n{"a":1}\n{"type":"session"}\n{"s":2}\n\n{"type":"event"}\n{"b":2}'
    )
    parsed = parse(body, KEEP, max_item=1000)
    assert [(i.type, i.payload) for i in parsed.items] == [
        ("event", b'{"a":1}'),
        ("session", None),
        ("event", b'{"b":2}'),
    ]
    # A header alone is an envelope without items; an empty payload at the end is allowed.
    assert parse(b'{"event_id":"x"}', KEEP, max_item=10).items == []
    assert parse(b'{}\n{"type":"event","length":0}', KEEP, max_item=10).items[0].payload == b""


def test_limits_and_malformed_input() -> None:
    with pytest.raises(BadRequest, match="truncated"):
        parse(b'{}\n{"type":"event","length":10}\nabc', KEEP, max_item=100)
    with pytest.raises(PayloadTooLarge):
        parse(b'{}\n{"type":"event","length":101}\n' + b"x" * 101, KEEP, max_item=100)
    with pytest.raises(PayloadTooLarge):
        feed_in_pieces(b'{}\n{"type":"event"}\n' + b"x" * 200, 16, max_item=100)
    # Items that are not kept are only counted, whatever their size.
    parsed = parse(b'{}\n{"type":"attachment","length":500}\n' + b"y" * 500, KEEP, max_item=100)
    assert parsed.items[0].size == 500 and parsed.items[0].payload is None
    reader = EnvelopeReader(KEEP, max_item=100, max_line=64)
    with pytest.raises(BadRequest, match="header line"):
        reader.feed(b"{" + b" " * 100)
    too_many = b"{}" + b'\n{"type":"session"}\n{}' * 101
    with pytest.raises(BadRequest, match="at most"):
        parse(too_many, KEEP, max_item=100)
    for bad in (b"", b"[1]\n", b'{}\n{"length":1}\nx', b'{}\n{"type":"event","length":-1}\n'):
        with pytest.raises(BadRequest):
            parse(bad, KEEP, max_item=100)


def decode_all(encoding: str, data: bytes, limit: int, piece: int = 5) -> bytes:
    decoder = body_decoder(encoding, limit)
    out = [decoder.decode(data[i : i + piece]) for i in range(0, len(data), piece)]
    out.append(decoder.finish())
    return b"".join(out)


def test_decoders_round_trip_in_pieces_and_stop_bombs() -> None:
    text = b"sentry envelope " * 200
    raw = zlib.compressobj(wbits=-15)
    cases = {
        "identity": text,
        "gzip": gzip.compress(text),
        "deflate": zlib.compress(text),
        "br": brotli.compress(text),
    }
    for encoding, data in cases.items():
        assert decode_all(encoding, data, len(text)) == text, encoding
        with pytest.raises(PayloadTooLarge):
            decode_all(encoding, data, len(text) - 1)
    assert decode_all("deflate", raw.compress(text) + raw.flush(), len(text)) == text
    bombs = {
        "gzip": gzip.compress(b"\0" * 30_000_000),
        "br": brotli.compress(b"\0" * 30_000_000),
    }
    for encoding, bomb in bombs.items():
        with pytest.raises(PayloadTooLarge):
            decode_all(encoding, bomb, 1_000_000, piece=len(bomb))
    for encoding in ("gzip", "br", "deflate"):
        with pytest.raises(BadRequest):
            decode_all(encoding, cases[encoding][:-6], len(text))
    with pytest.raises(UnsupportedMediaType):
        body_decoder("zstd", 10)
