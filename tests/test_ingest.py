"""Ingest internals and the endpoint in-process: decoding, gzip caps, idempotency, CORS."""

from __future__ import annotations

import gzip
import json
import sqlite3
import uuid
from typing import Any

import pytest
from litestar.testing import TestClient

from retrospec.app import create_app
from retrospec.blobs import BlobStore
from retrospec.errors import BadRequest, PayloadTooLarge
from retrospec.ingest import decode_envelope, event_bytes, gunzip_capped
from retrospec.settings import Settings
from tests.conftest import add_site

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari"


def batch(session_id: str | None = None, seq: int = 0, **extra: Any) -> dict[str, Any]:
    """A realistic batch: two rrweb events and one error."""
    body: dict[str, Any] = {
        "v": 1,
        "session": {
            "id": session_id or str(uuid.uuid4()),
            "user_agent": UA,
            "url": "https://shop.example/cart",
            "release": "1.4.2",
            "user": {"id": "u-42", "email": "ada@example.com"},
        },
        "seq": seq,
        "events": [
            {"type": 4, "data": {"href": "https://shop.example/cart"}, "timestamp": 1000},
            {"type": 2, "data": {"node": {"type": 0, "childNodes": []}}, "timestamp": 1001},
        ],
        "failures": [
            {
                "kind": "error",
                "ts": 1500,
                "type": "TypeError",
                "message": "Cannot read properties of undefined (reading 'total')",
                "stack": "TypeError: x\n    at checkout (https://shop.example/app.js:1:2)",
            }
        ],
    }
    body.update(extra)
    return body


def test_gunzip_stops_a_bomb_while_decompressing() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        gunzip_capped(bomb, 1_000_000)
    assert gunzip_capped(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000


def test_gunzip_rejects_garbage_and_truncation() -> None:
    data = gzip.compress(b"hello world" * 100)
    with pytest.raises(BadRequest, match="truncated"):
        gunzip_capped(data[: len(data) // 2], 10_000)
    with pytest.raises(BadRequest, match="not valid gzip"):
        gunzip_capped(b"\x1f\x8b" + b"garbage" * 10, 10_000)


def test_events_stay_raw_bytes() -> None:
    env = decode_envelope(json.dumps(batch()).encode())
    raw = event_bytes(env)
    assert raw is not None and raw.startswith(b"[") and b'"timestamp": 1001' in raw
    assert event_bytes(decode_envelope(json.dumps(batch(events=[])).encode())) is None
    no_events = batch()
    del no_events["events"]
    assert event_bytes(decode_envelope(json.dumps(no_events).encode())) is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"session": {"id": "abcdefgh"}, "seq": "1"}', "$.seq"),
        (b'{"session": {"id": "../../etc"}, "seq": 1}', "$.session.id"),
        (b'{"session": {"id": "abcdefgh"}, "seq": 1, "events": {"a": 1}}', "events"),
        (
            b'{"session": {"id": "abcdefgh"}, "seq": 1, "failures": [{"kind": "bogus", "ts": 1}]}',
            "$.failures[0].kind",
        ),
        (b'{"seq": 1}', "session"),
    ],
)
def test_bad_envelopes_name_the_problem(body: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_envelope(body)
    assert fragment in info.value.message


def _counts(settings: Settings) -> tuple[int, int, int]:
    with sqlite3.connect(settings.db_path) as conn:
        return (
            conn.execute("SELECT count(*) FROM sessions").fetchone()[0],
            conn.execute("SELECT count(*) FROM chunks").fetchone()[0],
            conn.execute("SELECT count(*) FROM failures").fetchone()[0],
        )


def test_ingest_stores_blob_then_rows_and_retries_are_idempotent(settings: Settings) -> None:
    _, key = add_site(settings, "shop", ["https://shop.example"])
    body = batch()
    sid = body["session"]["id"]
    with TestClient(create_app(settings, start_jobs=False)) as client:
        first = client.post(
            f"/api/v1/ingest?key={key}",
            content=json.dumps(body),
            headers={"origin": "https://shop.example", "content-type": "text/plain"},
        )
        assert first.status_code == 202, first.text
        assert first.json() == {"ok": True, "seq": 0, "duplicate": False}
        assert first.headers["access-control-allow-origin"] == "https://shop.example"
        again = client.post(
            "/api/v1/ingest",
            content=gzip.compress(json.dumps(body).encode()),
            headers={"x-retrospec-key": key, "content-encoding": "gzip"},
        )
        assert again.status_code == 202 and again.json()["duplicate"] is True
        second = client.post(
            f"/api/v1/ingest?key={key}", content=json.dumps(batch(sid, seq=1, events=[]))
        )
        assert second.status_code == 202
    assert _counts(settings) == (1, 2, 2)
    with sqlite3.connect(settings.db_path) as conn:
        row = conn.execute(
            "SELECT chunks, batches, failures, browser, os, user_key, replay_status "
            "FROM sessions WHERE id = ?",
            (sid,),
        ).fetchone()
        keys = [r[0] for r in conn.execute("SELECT blob_key FROM chunks ORDER BY seq")]
        payload = conn.execute("SELECT payload FROM failures LIMIT 1").fetchone()[0]
    assert row == (1, 2, 2, "Chrome 126", "Linux", "id:u-42", "pending")
    assert keys[1] is None  # failure-only batch: no blob
    stored = BlobStore(settings.effective_blob_url).get(keys[0])
    assert json.loads(stored) == body["events"]
    assert "at checkout" in json.loads(payload)["stack"]


def test_session_of_another_site_is_refused(settings: Settings) -> None:
    _, key_a = add_site(settings, "a")
    _, key_b = add_site(settings, "b")
    body = batch()
    with TestClient(create_app(settings, start_jobs=False)) as client:
        assert client.post(f"/api/v1/ingest?key={key_a}", content=json.dumps(body)).status_code
        body["seq"] = 1
        hijack = client.post(f"/api/v1/ingest?key={key_b}", content=json.dumps(body))
    assert hijack.status_code == 403
    assert _counts(settings) == (1, 1, 1)


def test_preflight_answers_allowed_origins_only(settings: Settings) -> None:
    _, key = add_site(settings, "shop", ["https://shop.example"])
    with TestClient(create_app(settings, start_jobs=False)) as client:
        ok = client.options(
            f"/api/v1/ingest?key={key}",
            headers={"origin": "https://shop.example", "access-control-request-method": "POST"},
        )
        bad = client.options(
            f"/api/v1/ingest?key={key}",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    assert "x-retrospec-key" in ok.headers["access-control-allow-headers"]
    assert bad.status_code == 403
    assert "access-control-allow-origin" not in bad.headers


def test_site_field_must_match_the_key(settings: Settings) -> None:
    _, key = add_site(settings, "shop")
    with TestClient(create_app(settings, start_jobs=False)) as client:
        wrong = client.post(f"/api/v1/ingest?key={key}", content=json.dumps(batch(site="blog")))
        right = client.post(f"/api/v1/ingest?key={key}", content=json.dumps(batch(site="shop")))
    assert wrong.status_code == 401 and "shop" in wrong.json()["error"]
    assert right.status_code == 202
