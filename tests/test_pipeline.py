"""What a public ingest key can do to a real `retrospec serve`: every guard of ingest.pipeline.

Each test plays the attacker (or the privacy-minded user) from issue 12 against a real server:
disk floors on a small real tmpfs (and on a fake floor from settings), quotas, the client and
session buckets, decompressed and per-session caps, parser bounds, and what reaches storage.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrospec.ingest.envelope import decode_payload
from retrospec.storage.blobs import BlobStore, read_chunk
from tests.support.data import add_site
from tests.support.disks import free_bytes
from tests.support.envelopes import batch, envelope, heavy_failures
from tests.support.servers import ServerProcess
from tests.support.shop import run_jobs

pytestmark = pytest.mark.slow

Serve = Callable[..., ServerProcess]
# Buckets off unless a test is about them: these tests send many batches from one address.
NO_BUCKETS = {"client_rate_limit_per_second": "0", "session_rate_limit_per_second": "0"}


def post(
    server: ServerProcess,
    key: str,
    body: dict[str, Any] | bytes,
    *,
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    send = client.post if client is not None else httpx.post
    return send(
        f"{server.base_url}/api/v1/ingest",
        params={"key": key},
        content=content,
        headers=headers or {},
        timeout=60,
    )


def db_rows(server: ServerProcess, sql: str, *args: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{server.settings.db_path}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


# --- the disk ------------------------------------------------------------------------------


def settled_free_bytes(disk: Path, quiet_s: float, timeout_s: float = 30.0) -> int:
    """The disk's free bytes once they have not changed for `quiet_s` seconds."""
    deadline = time.monotonic() + timeout_s
    last, since = free_bytes(disk), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = free_bytes(disk)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError(f"the disk never settled: {last} bytes free")


def test_failures_cannot_fill_a_small_disk_they_get_507_before_it_is_full(
    serve: Serve, tmpfs: Callable[[int], Path]
) -> None:
    disk = tmpfs(40)
    server = serve(
        data_dir=disk / "data", min_free_disk_mb=16, disk_reserve_mb=8, jobs="false", **NO_BUCKETS
    )
    _, key = add_site(server.settings, "shop")
    sid = str(uuid.uuid4())
    statuses: Counter[int] = Counter()
    refused = None
    for seq in range(400):
        body = heavy_failures(sid, seq)
        assert len(body) < 20_000  # tiny on the wire, ~2 MB once inflated
        response = post(server, key, body)
        statuses[response.status_code] += 1
        if response.status_code == 507:
            refused = response
            if statuses[507] >= 5:
                break
    assert set(statuses) == {202, 507}, statuses  # never a 500
    assert refused is not None
    assert "not stored" in refused.json()["error"] and refused.headers["retry-after"] == "60"
    # It stopped at the reserve, not at a full disk: SQLite and the jobs still have room.
    assert free_bytes(disk) > 6 * 1024 * 1024
    # Health tells what ingest would do now. Once the writer is idle its checkpointer may cut
    # the WAL back and free megabytes, so compare with the disk once it is at rest (steady
    # for longer than the guard's 2 s cache).
    free = settled_free_bytes(disk, quiet_s=2.5)
    expected = "degraded" if free < server.settings.min_free_disk_mb * 1024 * 1024 else "ok"
    assert httpx.get(f"{server.base_url}/healthz").json() == {"status": expected}, free
    assert db_rows(server, "PRAGMA quick_check") == [("ok",)]
    # Compact storage: each failure costs a few KB however much it carried.
    stored = db_rows(
        server, "SELECT count(*), max(length(message)), max(length(url)) FROM failures"
    )
    count, longest_message, longest_url = stored[0]
    assert count == statuses[202] * 100
    assert longest_message <= 2000 and longest_url <= 1024
    (payload,) = db_rows(server, "SELECT payload FROM failures LIMIT 1")[0]
    assert payload.startswith("z1:") and len(payload) < 2000  # compressed
    decoded = decode_payload(payload)
    assert decoded.stack is not None and len(decoded.stack) <= 16_384
    assert isinstance(decoded.context, str) and len(decoded.context) <= 8192  # cut, kept as text
    # The cluster job still runs on this disk (it failed outright once the disk was full).
    run_jobs(server.settings, "cluster")
    assert db_rows(server, "SELECT count(*) FROM clusters")[0][0] >= 1


def test_a_full_disk_is_a_507_never_a_500(serve: Serve, tmpfs: Callable[[int], Path]) -> None:
    # Floors off: the disk really fills up, and SQLite or the blob store meets ENOSPC.
    disk = tmpfs(16)
    server = serve(
        data_dir=disk / "data", min_free_disk_mb=0, disk_reserve_mb=0, jobs="false", **NO_BUCKETS
    )
    _, key = add_site(server.settings, "shop")
    sid = str(uuid.uuid4())
    statuses: list[int] = []
    for seq in range(300):
        statuses.append(post(server, key, heavy_failures(sid, seq)).status_code)
        if statuses[-5:] == [507] * 5:
            break
        # A replay batch now and then: its segment write meets the full disk too.
        events = [{"type": 3, "data": {"x": "e" * 40_000}, "timestamp": 5}]
        statuses.append(post(server, key, batch(str(uuid.uuid4()), events=events)).status_code)
    assert set(statuses) <= {202, 507}, Counter(statuses)
    assert 507 in statuses
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    assert "Traceback" not in server.log()


def test_the_floors_from_settings_refuse_replay_then_everything(serve: Serve) -> None:
    # Where a tmpfs cannot be mounted these floors still prove the rules: floors no disk meets.
    low = serve(min_free_disk_mb=10**9, disk_reserve_mb=0)
    _, key = add_site(low.settings, "shop")
    replay = post(low, key, batch())
    assert replay.status_code == 507 and "replay data is refused" in replay.json()["error"]
    assert post(low, key, batch(events=[])).status_code == 202  # failures still taken

    critical = serve(min_free_disk_mb=10**9, disk_reserve_mb=10**9)
    _, key = add_site(critical.settings, "shop")
    refused = post(critical, key, batch(events=[]))
    assert refused.status_code == 507
    assert "not stored" in refused.json()["error"] and refused.headers["retry-after"] == "60"
    assert db_rows(critical, "SELECT count(*) FROM failures") == [(0,)]


# --- quotas and buckets -------------------------------------------------------------------


def test_daily_quotas_per_site_survive_a_restart(serve: Serve) -> None:
    server = serve(quota_failures_per_day=5, quota_batches_per_day=8, **NO_BUCKETS)
    _, key = add_site(server.settings, "shop")
    _, other = add_site(server.settings, "blog")
    sid = str(uuid.uuid4())
    answers = [post(server, key, batch(sid, seq, events=[])).status_code for seq in range(7)]
    assert answers == [202] * 5 + [429] * 2
    over = post(server, key, batch(sid, 9, events=[]))
    assert "daily quota of 5 failures" in over.json()["error"]
    assert 0 < int(over.headers["retry-after"]) <= 86_400
    # Batches without failures still count against the batch quota, not the failure one.
    quiet = [post(server, key, batch(sid, 20 + i, failures=[])).status_code for i in range(4)]
    assert quiet == [202, 202, 202, 429]
    assert post(server, other, batch(events=[])).status_code == 202  # other sites unaffected
    usage = db_rows(
        server,
        "SELECT batches, failures FROM site_usage s JOIN sites ON sites.id = s.site_id "
        "WHERE sites.name = 'shop'",
    )
    assert usage == [(8, 5)]
    server.stop()
    server.start()  # the counters are in SQLite: a restart does not reset them
    assert post(server, key, batch(sid, 40, events=[])).status_code == 429


def test_one_client_cannot_spend_the_sites_budget(serve: Serve) -> None:
    # Refill rates so slow that no token comes back during the test, however slow the machine.
    server = serve(
        client_rate_limit_per_second=0.001,
        client_rate_limit_burst=5,
        session_rate_limit_per_second=0,
        rate_limit_per_second=0.001,
        rate_limit_burst=12,
    )
    _, key = add_site(server.settings, "shop")
    # The abuser (127.0.0.1) is stopped by its own bucket...
    abuser = [post(server, key, batch(events=[])).status_code for _ in range(20)]
    assert abuser[:5] == [202] * 5 and set(abuser[5:]) == {429}
    # ...which kept it from draining the site's: a visitor from another address gets in.
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as visitor:
        answers = [
            post(server, key, batch(events=[]), client=visitor).status_code for _ in range(5)
        ]
    assert answers == [202] * 5
    # A forged X-Forwarded-For changes nothing unless client_address_header is set.
    forged = post(server, key, batch(events=[]), headers={"x-forwarded-for": "203.0.113.9"})
    assert forged.status_code == 429 and "this client" in forged.json()["error"]


def test_a_proxy_header_names_the_client_only_when_configured(serve: Serve) -> None:
    server = serve(
        client_rate_limit_per_second=0.001,
        client_rate_limit_burst=2,
        session_rate_limit_per_second=0,
        client_address_header="X-Forwarded-For",
    )
    _, key = add_site(server.settings, "shop")

    def from_(address: str) -> int:
        # The proxy appends the address it saw: only the last entry counts.
        headers = {"x-forwarded-for": f"198.51.100.1, {address}"}
        return post(server, key, batch(events=[]), headers=headers).status_code

    assert [from_("203.0.113.1") for _ in range(3)] == [202, 202, 429]
    assert from_("203.0.113.2") == 202
    # IPv6 clients share one bucket per /64.
    assert [from_("2001:db8::1"), from_("2001:db8::2"), from_("2001:db8::3")] == [202, 202, 429]


def test_one_session_has_its_own_bucket(serve: Serve) -> None:
    server = serve(
        client_rate_limit_per_second=0,
        session_rate_limit_per_second=0.001,
        session_rate_limit_burst=3,
    )
    _, key = add_site(server.settings, "shop")
    sid = str(uuid.uuid4())
    answers = [post(server, key, batch(sid, seq, events=[])).status_code for seq in range(5)]
    assert answers == [202, 202, 202, 429, 429]
    assert post(server, key, batch(events=[])).status_code == 202  # another session


# --- caps ------------------------------------------------------------------------------


def test_replay_bombs_are_refused_at_ingest(serve: Serve) -> None:
    server = serve(**NO_BUCKETS)
    _, key = add_site(server.settings, "shop")
    # 10 MB of zeros as "events": 5 million of them, in a ~10 KB gzip body.
    zeros = b'{"v":1,"seq":0,"session":{"id":"' + str(uuid.uuid4()).encode() + b'"},"events":['
    zeros += b"0," * 5_000_000 + b"0]}"
    body = gzip.compress(zeros, 9)
    assert len(body) < 20_000
    started = time.monotonic()
    refused = post(server, key, body)
    assert refused.status_code == 413 and "at most 10000 events" in refused.json()["error"]
    assert time.monotonic() - started < 5
    assert db_rows(server, "SELECT count(*) FROM chunks") == [(0,)]
    # Over the decompressed cap: stopped while inflating.
    huge = gzip.compress(b'{"events":["' + b"x" * 17_000_000 + b'"]}', 9)
    assert post(server, key, huge).status_code == 413


def test_a_session_stops_taking_replay_data_at_its_cap_but_keeps_its_failures(
    serve: Serve,
) -> None:
    server = serve(max_session_mb=1, max_session_events=1_000_000, **NO_BUCKETS)
    _, key = add_site(server.settings, "shop")
    sid = str(uuid.uuid4())
    events = [{"type": 3, "data": {"source": 0, "x": "e" * 400_000}, "timestamp": 5}]
    answers = [post(server, key, batch(sid, seq, events=events)) for seq in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 413]
    assert "replay limit" in answers[2].json()["error"]
    # What the SDK does next: the same batch without its events.
    assert post(server, key, batch(sid, 2, events=[])).status_code == 202
    assert db_rows(server, "SELECT chunks, failures FROM sessions WHERE id = ?", sid) == [(2, 3)]

    capped = serve(max_session_events=5, **NO_BUCKETS)
    _, key = add_site(capped.settings, "shop")
    sid = str(uuid.uuid4())
    three = [{"type": 3, "data": {}, "timestamp": t} for t in range(3)]
    answers_ev = [post(capped, key, batch(sid, s, events=three)).status_code for s in range(3)]
    assert answers_ev == [202, 413, 413]


# --- parsers ------------------------------------------------------------------------------


def test_every_parser_path_is_bounded_and_nothing_answers_500(serve: Serve) -> None:
    server = serve(**NO_BUCKETS)
    _, key = add_site(server.settings, "shop")
    deep = "[" * 1000 + "]" * 1000
    good = json.dumps(batch())
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("deep context", good[:-1].encode() + f', "x": {deep}}}'.encode(), {}, 400),
        ("deep events", json.dumps(batch(events=[])).replace("[]", deep, 1).encode(), {}, 400),
        (
            "line past 64 bits",
            json.dumps(batch(failures=[{"kind": "error", "ts": 1, "lineno": 2**70}])).encode(),
            {},
            400,
        ),
        (
            "huge duration",
            good.replace('"ts": 1500', '"ts": 1500, "duration_ms": 1e300').encode(),
            {},
            400,
        ),
        ("session id with newline", json.dumps(batch("abcdefgh1234\n")).encode(), {}, 400),
    ]
    for name, body, headers, status in cases:
        response = post(server, key, body, headers=headers)
        assert response.status_code == status, (name, response.text)
    # Header values: a key of 10,000 characters is just an unknown key.
    assert post(server, "k" * 10_000, good.encode()).status_code == 401
    long_header = httpx.post(
        f"{server.base_url}/api/v1/ingest", content=good, headers={"x-retrospec-key": "x" * 8000}
    )
    assert long_header.status_code == 401
    assert "Traceback" not in server.log() and "RecursionError" not in server.log()


# --- privacy --------------------------------------------------------------------------------


SECRET = "s3cr3t-7f2a"


def leaky_batch(session_id: str) -> dict[str, Any]:
    """A batch as an old SDK (or any client) might send it: secrets in every URL-bearing field."""
    page = f"https://shop.example/cart?token={SECRET}&page=2#access_token={SECRET}"
    events = [
        {"type": 4, "data": {"href": page, "width": 800, "height": 600}, "timestamp": 1000},
        {
            "type": 2,
            "data": {
                "node": {
                    "type": 2,
                    "tagName": "a",
                    "id": 1,
                    "childNodes": [],
                    "attributes": {
                        "href": f"/reset?code={SECRET}",
                        "src": f"https://cdn.example/i.png?sig={SECRET}",
                        "srcset": f"a.png?k={SECRET} 1x, b.png?k={SECRET} 2x",
                        "action": f"/pay?session={SECRET}",
                    },
                }
            },
            "timestamp": 1001,
        },
        {"type": 5, "data": {"tag": "navigation", "payload": {"url": page}}, "timestamp": 1002},
    ]
    failures = [
        {
            "kind": "error",
            "ts": 1500,
            "type": "TypeError",
            "message": f"failed for card 4111 1111 1111 1111 with password={SECRET}",
            "stack": f"TypeError: x\n    at pay (https://shop.example/app.js?token={SECRET}:1:2)",
            "url": page,
            "filename": f"https://shop.example/app.js?token={SECRET}",
            "context": {"password": SECRET, "headers": {"Authorization": f"Bearer {SECRET}xx"}},
            "tags": {"api_key": SECRET, "plan": "pro"},
        },
        {
            "kind": "network",
            "ts": 1600,
            "method": "GET",
            "request_url": f"https://api.example/orders?sig={SECRET}",
            "status": 500,
            "message": f"GET https://api.example/orders?sig={SECRET} → 500",
        },
    ]
    session = {"id": session_id, "url": page, "user_agent": "Mozilla/5.0"}
    return envelope(session, 0, events=events, failures=failures)


def stored_bytes(server: ServerProcess) -> bytes:
    """Everything RetroSpec stored: the SQLite files and every chunk, decompressed."""
    data = b""
    for path in server.data_dir.glob("retrospec.sqlite3*"):
        data += path.read_bytes()
    blobs = BlobStore(server.settings.effective_blob_url)
    for key, offset, length in db_rows(
        server, "SELECT blob_key, blob_offset, blob_length FROM chunks WHERE blob_key IS NOT NULL"
    ):
        data += read_chunk(blobs, key, offset, length)
    for (payload,) in db_rows(server, "SELECT payload FROM failures WHERE payload IS NOT NULL"):
        data += json.dumps(decode_payload(payload).context).encode()
    return data


def test_no_query_string_or_secret_reaches_storage(serve: Serve) -> None:
    server = serve(jobs="false")
    _, key = add_site(server.settings, "shop")
    sid = str(uuid.uuid4())
    assert post(server, key, leaky_batch(sid)).status_code == 202
    server.stop()  # the final checkpoint folds the WAL into the database file
    data = stored_bytes(server)
    assert SECRET.encode() not in data
    assert b"4111 1111 1111 1111" not in data
    assert b"[Filtered]" in data and b"pro" in data  # scrubbed, not dropped
    assert b"https://shop.example/cart" in data and b"/reset" in data  # the paths stay


def test_kept_query_parameters_are_the_only_ones_left(serve: Serve) -> None:
    server = serve(jobs="false", keep_query_params="page")
    _, key = add_site(server.settings, "shop")
    sid = str(uuid.uuid4())
    assert post(server, key, leaky_batch(sid)).status_code == 202
    entry = db_rows(server, "SELECT entry_url FROM sessions WHERE id = ?", sid)
    assert entry == [("https://shop.example/cart?page=2",)]
    server.stop()
    assert SECRET.encode() not in stored_bytes(server)
