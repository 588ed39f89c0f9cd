"""Ingest internals and the endpoint in-process: decoding, gzip caps, idempotency, CORS."""

from __future__ import annotations

import asyncio
import errno
import gzip
import itertools
import json
import os
import sqlite3
import time
import uuid
from typing import Any

import pytest
from litestar.testing import TestClient

from retrospec.app import create_app
from retrospec.errors import (
    BadRequest,
    Forbidden,
    InsufficientStorage,
    PayloadTooLarge,
    StorageFailed,
)
from retrospec.ingest.prepare import (
    compress_events,
    decode_envelope,
    event_bytes,
    gunzip_capped,
    prepare,
    store_events,
)
from retrospec.ingest.write import (
    PendingChunk,
    PreparedBatch,
    stage_batches,
    store_batches,
    write_batch,
    write_batches,
)
from retrospec.settings import Settings
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore, is_segment_key, read_chunk, split_frames
from retrospec.storage.db import Writer, connect, reading, transaction
from tests.support.data import add_site
from tests.support.envelopes import batch

pytestmark = pytest.mark.backends


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
    with reading(settings.database) as conn:
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
    with reading(settings.database) as conn:
        row = conn.execute(
            "SELECT chunks, batches, failures, browser, os, user_key, replay_status "
            "FROM sessions WHERE id = ?",
            (sid,),
        ).fetchone()
        keys = [
            (r[0], r[1], r[2]) if r[0] else None
            for r in conn.execute(
                "SELECT blob_key, blob_offset, blob_length FROM chunks ORDER BY seq"
            )
        ]
        payload = conn.execute("SELECT payload FROM failures LIMIT 1").fetchone()[0]
    assert tuple(row) == (1, 2, 2, "Chrome 126", "Linux", "id:u-42", "pending")
    assert keys[1] is None  # failure-only batch: no blob
    stored = read_chunk(BlobStore(settings.effective_blob_url), *keys[0])
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


# --- segments: one file per writer group and site ---------------------------------------------


def prepared(
    site: Site, body: dict[str, Any], received_at: int = 1_700_000_000_000
) -> PreparedBatch:
    """A batch as the ingest handler hands it to the writer: events compressed, not written."""
    env = decode_envelope(json.dumps(body).encode())
    raw = event_bytes(env)
    return prepare(site, env, compress_events(raw) if raw is not None else None, received_at)


def chunk_files(settings: Settings) -> dict[str, bytes]:
    """Every chunk blob in the store (key -> stored bytes), temp files included."""
    blobs = BlobStore(settings.effective_blob_url)
    return {key: blobs.get_raw(key) for key, _size, _mtime in blobs.walk("chunks")}


def chunk_rows(settings: Settings) -> dict[tuple[str, int], tuple[Any, ...]]:
    with reading(settings.database) as conn:
        return {
            (r[0], r[1]): tuple(r[2:])
            for r in conn.execute(
                "SELECT session_id, seq, site_id, blob_key, blob_offset, blob_length, "
                "stored_bytes, raw_bytes FROM chunks"
            )
        }


def test_a_group_writes_one_segment_per_site_and_rows_point_into_it(settings: Settings) -> None:
    shop, _ = add_site(settings, "shop")
    blog, _ = add_site(settings, "blog")
    bodies = [batch(seq=0), batch(seq=0), batch(seq=0)]
    bodies[1]["events"] = [
        {"type": 3, "data": {"source": 2, "x": "é" * n}, "timestamp": n} for n in range(50)
    ]
    failure_only = batch(events=[])
    blog_body = batch(seq=3)
    batches = [
        prepared(shop, bodies[0]),
        prepared(blog, blog_body),
        prepared(shop, bodies[1]),
        prepared(shop, failure_only),
        prepared(shop, bodies[2]),
    ]
    conn = connect(settings.database)
    try:
        assert store_batches(conn, BlobStore(settings.effective_blob_url), batches) == [True] * 5
    finally:
        conn.close()
    files = chunk_files(settings)
    assert len(files) == 2 and all(is_segment_key(k) for k in files)  # one per site, not per chunk
    rows = chunk_rows(settings)
    assert rows[(failure_only["session"]["id"], 0)][1:4] == (None, None, None)
    blobs = BlobStore(settings.effective_blob_url)
    for body, site in [(bodies[0], shop), (blog_body, blog), (bodies[1], shop), (bodies[2], shop)]:
        site_id, key, offset, length, stored, raw = rows[(body["session"]["id"], body["seq"])]
        assert site_id == site.id and key.startswith(f"chunks/{site.id}/") and key in files
        assert stored == length and offset is not None
        events = read_chunk(blobs, key, offset, length)
        # Exactly the bytes the SDK sent (never parsed or re-encoded).
        assert events == event_bytes(decode_envelope(json.dumps(body).encode()))
        assert json.loads(events) == body["events"] and raw == len(events)
    shop_key = rows[(bodies[0]["session"]["id"], 0)][1]
    # The segment is the frames of its chunks, back to back, in group order.
    spans = sorted((r[2], r[3]) for (sid, _), r in rows.items() if r[1] == shop_key)
    assert spans[0][0] == 0 and len(spans) == 3
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert sum(n for _, n in spans) == len(files[shop_key])
    frames = split_frames(files[shop_key])
    assert [json.loads(f) for f in frames] == [b["events"] for b in bodies]


def test_duplicates_write_no_bytes(settings: Settings) -> None:
    site, _ = add_site(settings, "shop")
    blobs = BlobStore(settings.effective_blob_url)
    first = batch()
    conn = connect(settings.database)
    try:
        assert store_batches(conn, blobs, [prepared(site, first)]) == [True]
        before = chunk_files(settings)
        # A retry of the stored batch, plus a new batch sent twice within one group.
        new = batch(first["session"]["id"], seq=1)
        results = store_batches(
            conn, blobs, [prepared(site, first), prepared(site, new), prepared(site, new)]
        )
        assert results == [False, True, False]
        after = chunk_files(settings)
        added = {k: v for k, v in after.items() if k not in before}
        assert len(added) == 1
        (segment,) = added.values()
        assert [json.loads(f) for f in split_frames(segment)] == [new["events"]]
        # Only retries in a group: nothing to write at all.
        assert store_batches(conn, blobs, [prepared(site, first), prepared(site, new)]) == [
            False,
            False,
        ]
        assert chunk_files(settings) == after
    finally:
        conn.close()
    assert len(chunk_rows(settings)) == 2


def test_a_session_of_another_site_gets_no_bytes(settings: Settings) -> None:
    shop, _ = add_site(settings, "shop")
    blog, _ = add_site(settings, "blog")
    blobs = BlobStore(settings.effective_blob_url)
    body = batch()
    conn = connect(settings.database)
    try:
        assert store_batches(conn, blobs, [prepared(shop, body)]) == [True]
        before = chunk_files(settings)
        (refused,) = store_batches(conn, blobs, [prepared(blog, batch(body["session"]["id"], 1))])
    finally:
        conn.close()
    assert isinstance(refused, Forbidden)
    assert chunk_files(settings) == before

    # A new session claimed by two sites within one group: the first batch's site owns it.
    sid = str(uuid.uuid4())
    conn = connect(settings.database)
    try:
        results = store_batches(
            conn,
            blobs,
            [
                prepared(shop, batch(sid, 0)),
                prepared(blog, batch(sid, 1)),
                prepared(shop, batch(sid, 2)),
            ],
        )
    finally:
        conn.close()
    assert results[0] is True and isinstance(results[1], Forbidden) and results[2] is True
    (segment,) = (v for k, v in chunk_files(settings).items() if k not in before)
    assert len(split_frames(segment)) == 2  # the refused batch got no bytes
    assert sorted(seq for (s, seq) in chunk_rows(settings) if s == sid) == [0, 2]


@pytest.mark.parametrize(
    ("errno_value", "error", "status"),
    [(errno.EIO, StorageFailed, 500), (errno.ENOSPC, InsufficientStorage, 507)],
)
def test_a_failed_segment_write_answers_an_error_and_stores_nothing(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    errno_value: int,
    error: type[Exception],
    status: int,
) -> None:
    site, key = add_site(settings, "shop")
    blog, _ = add_site(settings, "blog")

    def refuse(self: BlobStore, blob_key: str, data: bytes) -> None:
        if f"/{site.id}/" in blob_key:
            raise OSError(errno_value, os.strerror(errno_value))
        real_put(self, blob_key, data)

    real_put = BlobStore.put_raw
    monkeypatch.setattr(BlobStore, "put_raw", refuse)
    blobs = BlobStore(settings.effective_blob_url)
    other = batch()
    conn = connect(settings.database)
    try:
        results = store_batches(
            conn, blobs, [prepared(site, batch()), prepared(blog, other), prepared(site, batch())]
        )
    finally:
        conn.close()
    assert isinstance(results[0], error) and isinstance(results[2], error)
    assert results[1] is True  # another site's segment in the same group is not affected
    assert [k[0] for k in chunk_rows(settings)] == [other["session"]["id"]]

    # Through the endpoint: an error answer, nothing stored; failure-only batches still land.
    body = batch()
    with TestClient(create_app(settings, start_jobs=False)) as client:
        refused = client.post(f"/api/v1/ingest?key={key}", content=json.dumps(body))
        assert refused.status_code == status and "not stored" in refused.json()["error"]
        taken = client.post(f"/api/v1/ingest?key={key}", content=json.dumps(batch(events=[])))
        assert taken.status_code == 202
    assert body["session"]["id"] not in {k[0] for k in chunk_rows(settings)}
    with reading(settings.database) as conn2:
        sessions = {r[0] for r in conn2.execute("SELECT id FROM sessions")}
        failures = conn2.execute(
            "SELECT count(*) FROM failures WHERE session_id = ?", (body["session"]["id"],)
        ).fetchone()[0]
    assert body["session"]["id"] not in sessions and failures == 0
    assert not any(f"/{site.id}/" in k for k in chunk_files(settings))


def test_the_writer_stages_a_group_outside_the_transaction(settings: Settings) -> None:
    site, _ = add_site(settings, "shop")
    blobs = BlobStore(settings.effective_blob_url)
    seen: list[tuple[int, bool]] = []

    def stage(conn: sqlite3.Connection, items: list[PreparedBatch]) -> list[Any]:
        seen.append((len(items), conn.in_transaction))
        return stage_batches(blobs, conn, items)

    bodies = [batch() for _ in range(40)]
    writer = Writer(settings.database)
    writer.start()

    async def go() -> list[Any]:
        # Hold the writer so every batch below is queued before it takes the next group.
        writer.submit(lambda c: time.sleep(0.3))
        return await asyncio.gather(
            *(writer.run_batched(write_batches, prepared(site, b), stage=stage) for b in bodies)
        )

    try:
        assert asyncio.run(go()) == [True] * 40
    finally:
        writer.stop()
    assert seen == [(40, False)]
    files = chunk_files(settings)
    assert len(files) == 1  # 40 chunks, one file
    rows = chunk_rows(settings)
    for b in bodies:
        _site, key, offset, length, _stored, _raw = rows[(b["session"]["id"], 0)]
        assert json.loads(read_chunk(blobs, key, offset, length)) == b["events"]


def test_rows_of_the_single_blob_layout_still_read(settings: Settings) -> None:
    site, _ = add_site(settings, "shop")
    blobs = BlobStore(settings.effective_blob_url)
    old = batch()
    env = decode_envelope(json.dumps(old).encode())
    raw = event_bytes(env)
    assert raw is not None
    legacy = prepare(site, env, store_events(blobs, site, env, raw), 1_700_000_000_000)
    conn = connect(settings.database)
    try:
        with transaction(conn):
            assert write_batch(conn, legacy)
        # A batch whose events were never written (no stage step) is refused, not stored.
        unstaged = prepared(site, batch(old["session"]["id"], 1))
        assert isinstance(unstaged.chunk, PendingChunk)
        with transaction(conn):
            (result,) = write_batches(conn, [unstaged])
        assert isinstance(result, Exception)
    finally:
        conn.close()
    _site, key, offset, length, _stored, _raw = chunk_rows(settings)[(old["session"]["id"], 0)]
    assert offset is None and length is None and not is_segment_key(key)
    assert json.loads(read_chunk(blobs, key, offset, length)) == old["events"]
    assert len(chunk_rows(settings)) == 1
