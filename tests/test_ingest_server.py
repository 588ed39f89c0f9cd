"""The ingest API through a real `retrospec serve`: every bad-input answer, retries, durability."""

from __future__ import annotations

import gzip
import json
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from retrospec.storage.blobs import BlobStore, read_chunk
from tests.support.data import add_site
from tests.support.envelopes import batch
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow


def counts(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT count(*) FROM sessions").fetchone()[0],
            conn.execute("SELECT count(*) FROM chunks").fetchone()[0],
            conn.execute("SELECT count(*) FROM failures").fetchone()[0],
        )


def blob_files(server: ServerProcess) -> list[Path]:
    root = server.data_dir / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def shop(serve: Callable[..., ServerProcess]) -> tuple[ServerProcess, str]:
    server = serve(max_body_bytes=20_000, max_decompressed_bytes=200_000)
    _, key = add_site(server.settings, "shop", ["https://shop.example"])
    return server, key


def test_every_bad_input_is_refused_with_a_json_error_and_nothing_stored(
    shop: tuple[ServerProcess, str],
) -> None:
    server, key = shop
    url = f"{server.base_url}/api/v1/ingest"
    good = json.dumps(batch()).encode()
    bomb = gzip.compress(json.dumps(batch(pad="x" * 5_000_000)).encode(), compresslevel=9)
    assert len(bomb) < 20_000  # small on the wire, 5 MB once inflated
    cases = [
        ("malformed JSON", {"key": key}, b'{"session": ', {}, 400, "malformed JSON"),
        (
            "wrong field type",
            {"key": key},
            json.dumps(batch(seq="one")).encode(),
            {},
            400,
            "Expected `int`, got `str` - at `$.seq`",
        ),
        ("missing key", {}, good, {}, 401, "missing ingest key"),
        ("unknown key", {"key": "rsk_nope"}, good, {}, 401, "unknown or revoked"),
        (
            "origin not allowed",
            {"key": key},
            good,
            {"origin": "https://evil.example"},
            403,
            "not allowed",
        ),
        ("over compressed cap", {"key": key}, b"x" * 30_000, {}, 413, "20000-byte limit"),
        ("gzip bomb", {"key": key}, bomb, {"content-type": "text/plain"}, 413, "decompressed"),
        (
            "unsupported type",
            {"key": key},
            good,
            {"content-type": "application/xml"},
            415,
            "application/xml",
        ),
        (
            "unsupported encoding",
            {"key": key},
            good,
            {"content-encoding": "br"},
            415,
            "'br'",
        ),
    ]
    for name, params, body, headers, status, fragment in cases:
        response = httpx.post(url, params=params, content=body, headers=headers, timeout=10)
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/json", name
        assert fragment in response.json()["error"], (name, response.json())
    assert counts(server.settings.db_path) == (0, 0, 0)
    assert blob_files(server) == []
    # The server is still healthy and takes a good batch afterwards.
    ok = httpx.post(
        url, params={"key": key}, content=good, headers={"origin": "https://shop.example"}
    )
    assert ok.status_code == 202
    assert counts(server.settings.db_path) == (1, 1, 1)


def test_chunked_upload_over_the_cap_is_cut_off(shop: tuple[ServerProcess, str]) -> None:
    server, key = shop

    def body() -> object:
        for _ in range(40):
            yield b"x" * 1000

    response = httpx.post(
        f"{server.base_url}/api/v1/ingest", params={"key": key}, content=body(), timeout=10
    )
    assert response.status_code == 413
    assert counts(server.settings.db_path) == (0, 0, 0)


def test_retries_are_idempotent(shop: tuple[ServerProcess, str]) -> None:
    server, key = shop
    url = f"{server.base_url}/api/v1/ingest"
    body = json.dumps(batch()).encode()
    answers = [httpx.post(url, params={"key": key}, content=body).json() for _ in range(3)]
    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert counts(server.settings.db_path) == (1, 1, 1)
    assert len(blob_files(server)) == 1


def test_rate_limit_answers_429_with_retry_after(serve: Callable[..., ServerProcess]) -> None:
    server = serve(rate_limit_per_second=1, rate_limit_burst=3)
    _, key = add_site(server.settings, "shop")
    url = f"{server.base_url}/api/v1/ingest"
    statuses = []
    limited = None
    for seq in range(6):
        response = httpx.post(url, params={"key": key}, content=json.dumps(batch(seq=seq)))
        statuses.append(response.status_code)
        if response.status_code == 429:
            limited = response
    assert statuses[:3] == [202, 202, 202]
    assert limited is not None and int(limited.headers["retry-after"]) >= 1
    assert "rate limit" in limited.json()["error"]
    stored = counts(server.settings.db_path)[1]
    assert stored == statuses.count(202)


def test_low_disk_refuses_replay_data_but_takes_failures(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(min_free_disk_mb=10**9, health_token="hc-token")  # a floor no disk meets
    _, key = add_site(server.settings, "shop")
    url = f"{server.base_url}/api/v1/ingest"
    refused = httpx.post(url, params={"key": key}, content=json.dumps(batch()))
    assert refused.status_code == 507
    assert "replay data is refused" in refused.json()["error"]
    assert counts(server.settings.db_path) == (0, 0, 0)
    failures_only = batch(events=[])
    taken = httpx.post(url, params={"key": key}, content=json.dumps(failures_only))
    assert taken.status_code == 202
    assert counts(server.settings.db_path) == (1, 1, 1)
    # Anyone learns that the server is degraded, not why nor by how much.
    assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "degraded"}
    health = httpx.get(
        f"{server.base_url}/healthz", headers={"authorization": "Bearer hc-token"}
    ).json()
    assert health["status"] == "degraded"
    assert health["disk"]["low"] is True and health["disk"]["replay_ingest"] == "refused"
    assert health["disk"]["failure_ingest"] == "accepted"


def test_acknowledged_batches_survive_sigkill(serve: Callable[..., ServerProcess]) -> None:
    server = serve()
    _, key = add_site(server.settings, "shop")
    url = f"{server.base_url}/api/v1/ingest"
    acked: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def client(n: int) -> None:
        sid = str(uuid.uuid4())
        try:
            with httpx.Client() as http:
                for seq in range(n):
                    r = http.post(url, params={"key": key}, content=json.dumps(batch(sid, seq)))
                    if r.status_code == 202:
                        acked.append((sid, seq))
        except httpx.HTTPError:
            pass  # the kill below cuts connections; unacknowledged batches may be lost
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(10_000,)) for _ in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 200:
        time.sleep(0.01)
    server.kill()  # SIGKILL while batches are in flight
    for t in threads:
        t.join()
    assert not errors
    snapshot = list(acked)
    assert len(snapshot) >= 200
    store = BlobStore(str(server.data_dir / "blobs"))
    with sqlite3.connect(server.settings.db_path) as conn:
        rows = {
            (sid, seq): (key, offset, length)
            for sid, seq, key, offset, length in conn.execute(
                "SELECT session_id, seq, blob_key, blob_offset, blob_length FROM chunks"
            )
        }
    for ack in snapshot:
        assert ack in rows, f"acknowledged batch {ack} lost"
        key, offset, length = rows[ack]
        assert offset is not None and length  # a frame of a segment
        assert json.loads(read_chunk(store, key, offset, length))[1]["type"] == 2


def test_sigterm_lets_in_flight_requests_finish(serve: Callable[..., ServerProcess]) -> None:
    server = serve(log_level="info")
    _, key = add_site(server.settings, "shop")
    body = json.dumps(batch()).encode()
    head = (
        f"POST /api/v1/ingest?key={key} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body[:100])
        time.sleep(0.3)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(body[100:])
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 202"), answer
    # uvicorn re-raises the signal after its graceful shutdown, like a default handler would.
    assert server.stop() in (0, -signal.SIGTERM)
    assert counts(server.settings.db_path) == (1, 1, 1)
    assert "stopped cleanly" in server.log()
