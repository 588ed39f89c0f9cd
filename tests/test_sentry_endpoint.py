"""The Sentry endpoints in-process, fed the envelopes the real SDK sent (tests/fixtures/sentry)."""

from __future__ import annotations

import gzip
import json
import sqlite3
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import brotli
import msgspec
import pytest
from litestar.testing import TestClient

from retrospec.app import create_app
from retrospec.ids import is_session_id
from retrospec.ingest.envelope import decode_payload
from retrospec.settings import Settings
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore, read_chunk
from tests.support.data import add_site, make_settings
from tests.support.sentry_fixtures import (
    Captured,
    captured,
    compressed,
    mechanism,
    pick,
    serialize,
    split_items,
)

ORIGIN = "http://localhost:8000"


@dataclass
class Env:
    settings: Settings
    site: Site
    client: TestClient[Any]

    def post(
        self,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        project: int | None = None,
        endpoint: str = "envelope",
    ) -> Any:
        key = self.site.dsn_key if key is None else key
        project = self.site.project_id if project is None else project
        query = (
            f"?sentry_version=7&sentry_key={key}&sentry_client=sentry.javascript.browser%2F11.12.0"
        )
        return self.client.post(
            f"/api/{project}/{endpoint}/{query if key else ''}",
            content=body,
            headers={"origin": ORIGIN, **(headers or {})},
        )

    def send(self, c: Captured, **kw: Any) -> Any:
        headers = {k: v for k, v in c.headers.items() if k in ("content-type", "user-agent")}
        return self.post(c.body, headers={**headers, **kw.pop("headers", {})}, **kw)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.settings.db_path) as conn:
            return conn.execute(sql, args).fetchall()

    def counts(self) -> tuple[int, int, int]:
        (row,) = self.rows(
            "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM chunks), "
            "(SELECT count(*) FROM failures)"
        )
        return row

    def events(self, session_id: str, seq: int) -> list[dict[str, Any]]:
        ((key, offset, length),) = self.rows(
            "SELECT blob_key, blob_offset, blob_length FROM chunks "
            "WHERE session_id = ? AND seq = ?",
            session_id,
            seq,
        )
        blobs = BlobStore(self.settings.effective_blob_url)
        return list(json.loads(read_chunk(blobs, key, offset, length)))


def make_env(tmp_path: Any, **settings: Any) -> Iterator[Env]:
    s = make_settings(tmp_path / "data", **settings)
    site, _key = add_site(s, "shop", [ORIGIN])
    with TestClient(create_app(s, start_jobs=False)) as client:
        yield Env(s, site, client)


@pytest.fixture
def env(tmp_path: Any) -> Iterator[Env]:
    yield from make_env(tmp_path)


def replay_segment(compressed_only: bool = True) -> Captured:
    return pick("replay_recording", lambda c: compressed(c) == compressed_only)


def replay_id_of(c: Captured) -> str:
    return str(c.json_item("replay_event")["replay_id"])


def segment_of(c: Captured) -> int:
    return int(c.json_item("replay_event")["segment_id"])


# --- what the SDK sends is taken --------------------------------------------------------------


def test_every_recorded_envelope_is_taken_in_order(env: Env) -> None:
    for c in captured():
        res = env.send(c)
        assert res.status_code == 200, (c.name, res.text)
        assert res.headers["access-control-allow-origin"] == ORIGIN
        assert "x-sentry-rate-limits" in res.headers["access-control-expose-headers"]
        named = c.header.get("event_id")
        assert res.json() == ({"id": named} if named else {})
    sessions = {r[0] for r in env.rows("SELECT id FROM sessions")}
    assert sessions and all(is_session_id(s) for s in sessions)
    replays = {replay_id_of(c) for c in captured() if "replay_event" in c.types}
    assert {f"sr-{r}" for r in replays} <= sessions
    kinds = {r[0] for r in env.rows("SELECT kind FROM failures")}
    assert {"error", "unhandledrejection", "custom"} <= kinds
    events = sum(1 for c in captured() if "event" in c.types)
    assert env.counts()[2] == events
    sessions_sent = sum(1 for c in captured() if "session" in c.types)
    counted = dict(env.rows("SELECT item_type, count FROM sentry_item_counts"))
    assert counted == {"session": sessions_sent}


def test_a_compressed_replay_without_content_type_becomes_a_playable_chunk(env: Env) -> None:
    c = replay_segment()
    assert "content-type" not in c.headers  # as the SDK sends it
    res = env.send(c)
    assert res.status_code == 200, res.text
    assert res.json() == {"id": replay_id_of(c)}
    session = f"sr-{replay_id_of(c)}"
    events = env.events(session, segment_of(c))
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)  # the SDK appends spans out of order; we sort
    assert min(stamps) > 1e12  # every timestamp in milliseconds (spans come in seconds)
    tags = {e["data"].get("tag") for e in events if e["type"] == 5}
    assert not tags & {"options", "performanceSpan"}
    assert any(e["type"] == 2 for e in events) == (segment_of(c) == 0)
    (row,) = env.rows(
        "SELECT replay_status, entry_url, browser, release, environment, sdk FROM sessions"
    )
    assert row[0] == "pending" and row[1].startswith("http://localhost")
    assert row[2].startswith("Chrome") and row[3:5] == ("shop@1.0.0", "prod")
    assert row[5] == "sentry.javascript.browser/11.12.0"


def test_an_uncompressed_replay_is_taken_too(env: Env) -> None:
    c = replay_segment(compressed_only=False)
    assert c.headers["content-type"].startswith("text/plain")
    assert env.send(c).status_code == 200
    assert env.events(f"sr-{replay_id_of(c)}", segment_of(c))


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "br"])
def test_compressed_bodies_are_decoded(env: Env, encoding: str) -> None:
    c = replay_segment()
    if encoding == "gzip":
        body = gzip.compress(c.body)
    elif encoding == "br":
        body = brotli.compress(c.body)
    else:
        obj = zlib.compressobj(wbits=15 if encoding == "deflate" else -15)
        body = obj.compress(c.body) + obj.flush()
    header = encoding.removesuffix("-raw")
    res = env.post(body, headers={"content-encoding": header})
    assert res.status_code == 200, res.text
    assert env.events(f"sr-{replay_id_of(c)}", segment_of(c))


def test_a_gzip_bomb_body_is_refused_while_decoding(tmp_path: Any) -> None:
    for env in make_env(tmp_path, max_decompressed_bytes=1_000_000):
        bomb = gzip.compress(b"{}\n" + b" " * 20_000_000, compresslevel=9)
        res = env.post(bomb, headers={"content-encoding": "gzip"})
        assert res.status_code == 413, res.text
        res = env.post(b"\x1f\x8b\x08\x00garbage", headers={"content-encoding": "gzip"})
        assert res.status_code == 400
        res = env.post(b"{}", headers={"content-encoding": "zstd"})
        assert res.status_code == 415
        assert env.counts() == (0, 0, 0)


def test_content_type_does_not_matter(env: Env) -> None:
    c = pick("event")
    for ctype in ("application/x-sentry-envelope", "application/octet-stream", "text/plain"):
        assert env.send(c, headers={"content-type": ctype}).status_code == 200
    assert env.counts()[2] == 1  # the same event three times: stored once


def test_an_unknown_item_between_known_ones_is_skipped_and_counted(env: Env) -> None:
    c = replay_segment()
    (event_item, recording_item) = c.items
    made_up = ({"type": "made_up", "length": 9}, b"not\nmine!")
    attachment = ({"type": "attachment", "filename": "a.txt"}, b"plain text")
    body = serialize(c.header, [event_item, made_up, attachment, recording_item])
    res = env.post(body)
    assert res.status_code == 200, res.text
    assert env.events(f"sr-{replay_id_of(c)}", segment_of(c))
    counted = dict(env.rows("SELECT item_type, count FROM sentry_item_counts"))
    assert counted == {"other": 1, "attachment": 1}


def test_a_truncated_length_prefixed_item_is_refused_and_nothing_stored(env: Env) -> None:
    c = replay_segment()
    for cut in (10, len(c.items[1][1]) - 1):
        res = env.post(c.body[: len(c.body) - cut])
        assert res.status_code == 400, res.text
        assert "truncated" in res.json()["error"]
    assert env.counts() == (0, 0, 0)


def test_malformed_envelopes_are_400(env: Env) -> None:
    for body in (b"", b"not json", b'{}\n{"length":3}\nabc', b'{}\n{"type":"event"}\n{oops'):
        res = env.post(body)
        assert res.status_code == 400, (body, res.text)
        assert res.json()["error"]
    assert env.counts() == (0, 0, 0)


def test_keys_projects_and_origins(env: Env, tmp_path: Any) -> None:
    event = pick("event").body
    assert env.post(event, key="f" * 32).status_code == 403  # unknown key: Sentry says 403
    assert env.post(event, key="").status_code == 401
    other, _ = add_site(env.settings, "blog")
    assert env.post(event, key=other.dsn_key, project=env.site.project_id).status_code == 403
    res = env.post(event, headers={"origin": "https://evil.example"})
    assert res.status_code == 403
    assert res.headers["access-control-allow-origin"] == "https://evil.example"
    assert env.counts() == (0, 0, 0)
    # Other ways to pass the key: X-Sentry-Auth, and the envelope header's dsn.
    auth = f"Sentry sentry_version=7, sentry_client=x/1, sentry_key={env.site.dsn_key}"
    res = env.post(event, key="", headers={"x-sentry-auth": auth})
    assert res.status_code == 200, res.text
    c = pick("event", lambda c: c.body != event)
    header = {**c.header, "dsn": f"http://{env.site.dsn_key}@example.com/{env.site.project_id}"}
    res = env.post(serialize(header, c.items), key="")
    assert res.status_code == 200, res.text
    assert env.counts()[2] == 2


def test_the_legacy_store_endpoint_takes_one_event(env: Env) -> None:
    c = pick("event")
    event = c.items[0][1]
    res = env.post(event, endpoint="store", headers={"content-type": "application/json"})
    assert res.status_code == 200, res.text
    assert res.json() == {"id": json.loads(event)["event_id"]}
    assert env.counts()[2] == 1


def test_preflight_and_other_methods(env: Env) -> None:
    base = f"/api/{env.site.project_id}/envelope/?sentry_key={env.site.dsn_key}"
    res = env.client.options(
        base, headers={"origin": ORIGIN, "access-control-request-method": "POST"}
    )
    assert res.status_code == 204
    assert res.headers["access-control-allow-origin"] == ORIGIN
    assert "x-sentry-auth" in res.headers["access-control-allow-headers"]
    res = env.client.options(base, headers={"origin": "https://evil.example"})
    assert res.status_code == 403
    assert env.client.get(base).status_code == 405


def test_a_resent_segment_is_stored_once(env: Env) -> None:
    c = replay_segment()
    assert env.send(c).status_code == 200
    retried = serialize(c.header, c.items)  # byte for byte what the SDK re-sends
    assert env.post(retried).status_code == 200
    assert env.rows("SELECT count(*) FROM chunks") == [(1,)]


def test_an_over_quota_site_gets_429_in_sentrys_words(tmp_path: Any) -> None:
    for env in make_env(tmp_path, rate_limit_per_second=0.01, rate_limit_burst=1):
        c = pick("event")
        assert env.send(c).status_code == 200
        res = env.send(c)
        assert res.status_code == 429, res.text
        seconds = res.headers["retry-after"]
        assert seconds.isdigit() and int(seconds) >= 1
        limits = res.headers["x-sentry-rate-limits"]
        assert limits.split(":")[:3] == [seconds, "", "project"]  # every category, that long
        exposed = res.headers["access-control-expose-headers"]
        assert "x-sentry-rate-limits" in exposed and "retry-after" in exposed


def test_a_zlib_bomb_in_a_recording_is_413_and_nothing_is_stored(env: Env) -> None:
    c = replay_segment()
    replay_event, recording = c.items
    head = recording[1].split(b"\n", 1)[0]
    bomb = zlib.compress(b"[" + b" " * 40_000_000 + b"]", 9)
    assert len(bomb) < env.settings.max_body_bytes
    payload = head + b"\n" + bomb
    body = serialize(
        c.header, [replay_event, ({"type": "replay_recording", "length": len(payload)}, payload)]
    )
    res = env.post(body)
    assert res.status_code == 413, res.text
    assert env.counts() == (0, 0, 0)


def test_an_error_before_its_buffered_replay_links_to_it(env: Env) -> None:
    # Buffer mode: the SDK sends the error first, then the segments it buffered.
    buffered = pick(
        "replay_event", lambda c: c.json_item("replay_event")["replay_type"] == "buffer"
    )
    replay_id = replay_id_of(buffered)
    error = pick(
        "event", lambda c: c.json_item("event").get("tags", {}).get("replayId") == replay_id
    )
    assert env.send(error).status_code == 200
    for c in captured():
        if "replay_event" in c.types and replay_id_of(c) == replay_id:
            assert env.send(c).status_code == 200
    session = f"sr-{replay_id}"
    (row,) = env.rows("SELECT chunks, failures, replay_status FROM sessions WHERE id = ?", session)
    assert row[0] >= 1 and row[1] == 1 and row[2] == "pending"
    assert env.rows("SELECT session_id FROM failures") == [(session,)]


def test_an_error_named_by_a_segment_joins_its_replay(env: Env) -> None:
    c = replay_segment()
    replay_event, recording = c.items
    event_capture = pick("event", lambda c: mechanism(c) == "auto.browser.global_handlers.onerror")
    event = event_capture.json_item("event")
    event.pop("tags", None)  # an SDK that does not tag errors with the replay
    header = {k: v for k, v in event_capture.header.items() if k != "trace"}
    named = json.loads(replay_event[1])
    named["error_ids"] = [event["event_id"]]
    item = json.dumps(named).encode()
    assert (
        env.post(serialize(c.header, [({"type": "replay_event"}, item), recording])).status_code
        == 200
    )
    assert (
        env.post(serialize(header, [({"type": "event"}, json.dumps(event).encode())])).status_code
        == 200
    )
    assert env.rows("SELECT session_id FROM failures") == [(f"sr-{replay_id_of(c)}",)]


def test_failures_keep_what_the_event_said(env: Env) -> None:
    c = pick("event", lambda c: mechanism(c).startswith("auto.browser.browserapierrors"))
    event = c.json_item("event")
    assert env.send(c).status_code == 200
    ((kind, type_, message, url, release, browser, payload),) = env.rows(
        "SELECT kind, type, message, url, release, browser, payload FROM failures"
    )
    assert (kind, type_) == ("error", "TypeError")
    assert message == event["exception"]["values"][-1]["value"]
    assert url == event["request"]["url"] and release == "shop@1.0.0"
    assert browser.startswith("Chrome")
    stored = msgspec.to_builtins(decode_payload(payload))
    lines = stored["stack"].splitlines()
    assert lines[0].startswith("TypeError: ")
    assert lines[1].startswith("    at computeCartTotal (") and "/app.js:" in lines[1]
    assert stored["tags"]["level"] == "error"
    assert stored["context"]["sentry"]["mechanism"]["type"].startswith("auto.browser")


def test_items_the_adapter_does_not_store_never_fail_the_envelope(env: Env) -> None:
    c = pick("session")
    items = [
        *c.items,
        ({"type": "client_report"}, b'{"discarded_events":[]}'),
        ({"type": "transaction"}, b"{not even json"),
        ({"type": "span", "item_count": 1}, b'{"version":2,"items":[]}'),
    ]
    assert env.post(serialize(c.header, items)).status_code == 200
    counted = dict(env.rows("SELECT item_type, count FROM sentry_item_counts"))
    assert counted == {"session": 1, "client_report": 1, "transaction": 1, "span": 1}
    assert env.counts() == (0, 0, 0)


def test_split_items_reads_the_fixtures_like_the_sdk_wrote_them() -> None:
    for c in captured():
        assert serialize(c.header, split_items(c.body)) == c.body, c.name
