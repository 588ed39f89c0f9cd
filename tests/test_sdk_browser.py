"""The SDK in Debian chromium against a real `retrospec serve`, from a page on another origin."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from retrospec.ingest.envelope import decode_payload
from retrospec.issues.fingerprint import FailureInput, fingerprint
from retrospec.storage.blobs import BlobStore, read_chunk, split_frames
from tests.support.browser import query, sdk_page, wait_for
from tests.support.data import add_site
from tests.support.servers import ServerProcess, StaticSite, free_port, server_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

META, FULL_SNAPSHOT, INCREMENTAL, CUSTOM = 4, 2, 3, 5
MOUSE_INTERACTION, INPUT = 2, 5


def site_rows(server: ServerProcess, table: str, site_id: str) -> list[sqlite3.Row]:
    """Every row of sessions/chunks/failures for one site."""
    order = {"sessions": "started_at", "chunks": "session_id, seq", "failures": "id"}[table]
    return query(
        server.settings.db_path,
        f"SELECT * FROM {table} WHERE site_id = ? ORDER BY {order}",
        site_id,
    )


def chunk_events(server: ServerProcess, session_id: str) -> list[tuple[int, list[Any]]]:
    """(seq, events) of every stored chunk of a session, in seq order."""
    blobs = BlobStore(server.settings.effective_blob_url)
    rows = query(
        server.settings.db_path,
        "SELECT seq, blob_key, blob_offset, blob_length FROM chunks WHERE session_id = ? "
        "ORDER BY seq",
        session_id,
    )
    return [
        (
            r["seq"],
            json.loads(read_chunk(blobs, r["blob_key"], r["blob_offset"], r["blob_length"]))
            if r["blob_key"]
            else [],
        )
        for r in rows
    ]


def all_blob_bytes(server: ServerProcess) -> bytes:
    """Every stored chunk, decompressed and concatenated (every frame of every segment)."""
    blobs = BlobStore(server.settings.effective_blob_url)
    return b"\n".join(
        frame
        for key, _, _ in blobs.walk("chunks")
        if not blobs.is_temp(key)
        for frame in split_frames(blobs.get_raw(key))
    )


def custom_events(events: list[Any], tag: str) -> list[dict[str, Any]]:
    """Payloads of the rrweb custom events (type 5) with this tag."""
    return [e["data"]["payload"] for e in events if e["type"] == 5 and e["data"]["tag"] == tag]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, chromium_executable: str
) -> Iterator[ServerProcess]:
    """One server for the tests that only add their own site (jobs off: chunks stay as sent)."""
    # Depends on chromium_executable so a machine without chromium skips before starting it.
    data = tmp_path_factory.mktemp("sdk-server") / "data"
    data.mkdir()
    proc = ServerProcess(data_dir=data, port=free_port(), env=server_env(data, jobs="false"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (own sessionStorage/localStorage) per test."""
    ctx = browser.new_context()
    yield ctx
    ctx.close()


def new_site(server: ServerProcess, name: str, origins: list[str] | None = None) -> tuple[str, str]:
    site, key = add_site(server.settings, name, origins)
    return site.id, key


FORM = """
<form onsubmit="return false">
  <input id="name" name="name">
  <input id="pw" type="password" name="password">
  <button id="add" type="button" onclick="this.textContent = 'Added ' + (++window.clicks)">
    Add to cart</button>
  <button id="go" type="button" onclick="history.pushState({}, '', '/checkout?coupon=SAVE10')">
    Checkout</button>
</form>
<script>window.clicks = 0;</script>
"""


def test_session_is_stored_in_order_across_a_reload_and_page_hide(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "record")
    # A long flush interval: after each page's snapshot, only page hide sends anything.
    url = static_site.write(
        "a.html", sdk_page(server, key, body=FORM, options={"flushIntervalMs": 60000})
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(url + "?token=SECRET-TOKEN-1")
    wait_for(lambda: site_rows(server, "chunks", site_id), what="the first snapshot")
    page.fill("#name", "visible-secret-text")
    page.fill("#pw", "hunter2-password")
    page.click("#add")
    page.click("#go")
    assert page.evaluate("location.pathname") == "/checkout"
    page.goto(url + "?token=SECRET-TOKEN-2")  # same tab, new document: the session goes on
    wait_for(lambda: len(site_rows(server, "chunks", site_id)) >= 3, what="page hide + reload")
    page.fill("#name", "second-page-secret")
    page.click("#add")
    page.reload()
    wait_for(lambda: len(site_rows(server, "chunks", site_id)) >= 5, what="second page hide")
    session_id = page.evaluate("JSON.parse(sessionStorage['retrospec.session']).id")
    page.click("#add")
    page.goto("about:blank")  # the last page hide
    wait_for(lambda: len(site_rows(server, "chunks", site_id)) >= 6, what="final page hide")

    sessions = site_rows(server, "sessions", site_id)
    assert [s["id"] for s in sessions] == [session_id]
    chunks = chunk_events(server, session_id)
    assert [seq for seq, _ in chunks] == list(range(len(chunks)))
    events = [e for _, batch in chunks for e in batch]
    assert sum(e["type"] == FULL_SNAPSHOT for e in events) == 3  # one per document
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert [e["data"]["href"] for e in events if e["type"] == META] == [url] * 3
    nav = custom_events(events, "navigation")
    assert [n["url"] for n in nav] == [f"{static_site.origin}/checkout"]
    sources = [e["data"]["source"] for e in events if e["type"] == INCREMENTAL]
    assert sources.count(MOUSE_INTERACTION) >= 3  # clicks (down/up/click) were recorded
    inputs = [
        e["data"] for e in events if e["type"] == INCREMENTAL and e["data"]["source"] == INPUT
    ]
    assert inputs and all(set(i["text"]) <= {"*"} for i in inputs)
    # Each page-hide batch held what was typed on that page.
    assert any(e["type"] == INCREMENTAL and e["data"]["source"] == INPUT for e in chunks[1][1]), (
        "the batch beaconed at page hide carries the typing"
    )

    stored = all_blob_bytes(server)
    for secret in (b"visible-secret-text", b"hunter2-password", b"second-page-secret"):
        assert secret not in stored
    assert b"SECRET-TOKEN" not in stored
    row = sessions[0]
    assert "SECRET" not in (row["entry_url"] + row["last_url"])
    assert errors == []


ACTIONS = """
<script>
function explode(order) { return order.lines.length; }
window.onerror = function () { window.pageSawError = (window.pageSawError || 0) + 1; };
</script>
"""


def test_each_failure_kind_is_captured_with_its_fields(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "failures")
    closed = free_port()
    options = {
        "flushIntervalMs": 200,
        "release": "1.2.3",
        "environment": "test",
        "ignoreErrors": ["IgnoreMe"],
    }
    html = sdk_page(server, key, body=ACTIONS, options=options).replace(
        "Retrospec.initRetrospec({",
        "Retrospec.initRetrospec({beforeSend: (f) => {"
        " if (/drop-me/.test(f.message)) return null;"
        " if (/throw-in-beforeSend/.test(f.message)) throw new Error('scrubber bug');"
        " f.tags = Object.assign({}, f.tags, {seen: 'yes'}); return f; },",
    )
    url = static_site.write("b.html", html)
    page = context.new_page()
    page_errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(url + "?secret=abc")
    page.evaluate("rs.identify({id: 'u-1', email: 'ada@example.com', name: 'Ada'})")
    page.evaluate(
        """(closed) => {
        setTimeout(() => explode({}));
        setTimeout(() => explode({}));
        setTimeout(() => { throw new Error('IgnoreMe please'); });
        Promise.reject(new RangeError('bad range'));
        Promise.reject({code: 42});
        const loop = {name: 'loop'}; loop.self = loop;
        console.error('Cart broke', loop, 7);
        console.error('drop-me please');
        console.error('throw-in-beforeSend');
        fetch('/api/fail?token=abc', {method: 'POST'});
        fetch('/missing.json');  // 404 is not a failure by default
        fetch('http://127.0.0.1:' + closed + '/down?token=abc').catch(() => {});
        const aborted = new AbortController();
        fetch('/slow', {signal: aborted.signal}).catch(() => {});
        aborted.abort();
        const xhr = new XMLHttpRequest();
        xhr.open('POST', '/api/xhr?token=abc');
        xhr.send('x');
        const gone = new XMLHttpRequest();
        gone.open('GET', 'http://127.0.0.1:' + closed + '/gone');
        gone.send();
        rs.captureException(new Error('handled checkout'),
            {tags: {area: 'checkout'}, fingerprint: ['checkout-handled'], orderId: 7});
        rs.captureException('a plain string');
    }""",
        closed,
    )
    expected = 11
    rows = wait_for(
        lambda: (r := site_rows(server, "failures", site_id)) and len(r) >= expected and r,
        what=f"{expected} failures",
    )
    page.wait_for_timeout(500)  # nothing beyond the expected ones trickles in late
    rows = site_rows(server, "failures", site_id)
    assert len(rows) == expected, [(r["kind"], r["message"]) for r in rows]
    page_url = f"{static_site.origin}/b.html"

    def payload(row: Any) -> dict[str, Any]:
        return json.loads(row["payload"]) if row["payload"] else {}

    by_kind: dict[str, list[Any]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
        assert r["url"] == page_url
        assert r["release"] == "1.2.3" and r["environment"] == "test"
        assert r["user_key"] == "id:u-1"
        assert payload(r)["tags"]["seen"] == "yes"
    assert {k: len(v) for k, v in by_kind.items()} == {
        "error": 2, "unhandledrejection": 2, "console": 1, "network": 4, "custom": 2,
    }  # fmt: skip

    errors = by_kind["error"]
    for r in errors:
        assert (r["type"], r["message"]) == (
            "TypeError",
            "Cannot read properties of undefined (reading 'length')",
        )
        p = payload(r)
        assert p["filename"] == page_url and p["lineno"] > 0 and p["colno"] > 0
        assert "explode" in p["stack"]
    shapes = [
        fingerprint(
            FailureInput(
                kind="error",
                type=r["type"],
                message=r["message"],
                stack=payload(r)["stack"],
                page_url=r["url"],
            )
        )
        for r in errors
    ]
    assert shapes[0].basis == "stack" and shapes[0].hash == shapes[1].hash

    rejections = sorted(by_kind["unhandledrejection"], key=lambda r: r["type"])
    assert (rejections[0]["type"], rejections[0]["message"]) == ("RangeError", "bad range")
    assert "RangeError: bad range" in payload(rejections[0])["stack"]
    assert rejections[1]["type"] == "UnhandledRejection"
    assert rejections[1]["message"] == 'Non-Error promise rejection: {"code":42}'
    assert payload(rejections[1])["context"] == {"reason": {"code": 42}}

    (cons,) = by_kind["console"]
    assert cons["message"] == 'Cart broke {"name":"loop","self":"[Circular]"} 7'
    assert payload(cons)["stack"]  # where console.error was called from

    http = [r for r in by_kind["network"] if r["status"] == 501]
    assert sorted(r["request_url"] for r in http) == [
        f"{static_site.origin}/api/fail",
        f"{static_site.origin}/api/xhr",
    ]
    assert sorted(payload(r)["context"]["api"] for r in http) == ["fetch", "xhr"]
    down = [r for r in by_kind["network"] if r["status"] == 0]
    assert sorted(r["request_url"] for r in down) == [
        f"http://127.0.0.1:{closed}/down",
        f"http://127.0.0.1:{closed}/gone",
    ]
    for r in by_kind["network"]:
        assert r["duration_ms"] is not None and r["duration_ms"] >= 0
        assert r["type"] in ("HTTPError", "NetworkError")

    custom = sorted(by_kind["custom"], key=lambda r: r["message"])
    assert custom[0]["message"] == "a plain string"
    assert (custom[1]["type"], custom[1]["message"]) == ("Error", "handled checkout")
    p = payload(custom[1])
    assert p["fingerprint"] == ["checkout-handled"]
    assert p["tags"] == {"area": "checkout", "seen": "yes"}
    assert p["context"] == {"orderId": 7}

    # Each failure is on the replay timeline too, at its own timestamp.
    session_id = rows[0]["session_id"]
    events = [e for _, batch in chunk_events(server, session_id) for e in batch]
    markers = custom_events(events, "retrospec.failure")
    assert sorted(m["ts"] for m in markers) == sorted(r["ts"] for r in rows)
    first = min(e["timestamp"] for e in events)
    assert all(r["ts"] >= first for r in rows)

    (session,) = site_rows(server, "sessions", site_id)
    assert (session["user_id"], session["user_email"], session["user_name"]) == (
        "u-1",
        "ada@example.com",
        "Ada",
    )
    # The page's own handlers still run, console.error still prints, nothing of ours leaked.
    assert page.evaluate("window.pageSawError") == 3
    assert any(text.startswith("Cart broke") for text in console)
    explode = "Cannot read properties of undefined (reading 'length')"
    assert sorted(page_errors) == sorted(
        [explode, explode, "IgnoreMe please", "bad range", "Object"]
    )


def test_module_import_works_cross_origin_and_leaks_no_globals(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "module")
    config = json.dumps({"apiBaseUrl": server.base_url, "apiKey": key, "flushIntervalMs": 200})
    url = static_site.write(
        "m.html",
        f"""<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<p>module page</p>
<script>window.define = function () {{ throw new Error('AMD loader called'); }};
window.define.amd = {{}};</script>
<script type="module">
import {{ initRetrospec }} from "{server.base_url}/sdk/retrospec.mjs";
const rs = initRetrospec({config});
window.sameClient = initRetrospec({{}}) === rs;
rs.captureException(new Error("from a module"));
window.ready = true;
</script></body></html>""",
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.ready === true")
    (failure,) = wait_for(lambda: site_rows(server, "failures", site_id), what="module failure")
    assert failure["message"] == "from a module"
    wait_for(lambda: site_rows(server, "chunks", site_id), what="module recording")
    leaked = page.evaluate(
        "['Retrospec', 'rrwebRecord', 'RRWEB', 'initRetrospec', 'now', 'cap']"
        ".filter((name) => name in window)"
    )
    assert leaked == []
    assert page.evaluate("window.sameClient") is True
    assert errors == []


def test_classic_script_ignores_an_amd_loader_on_the_page(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "amd")
    html = sdk_page(server, key, options={"flushIntervalMs": 200}).replace(
        "<script src=",
        "<script>window.define = function () { throw new Error('AMD loader called'); };"
        "window.define.amd = {}; window.module = {exports: {}};</script>\n<script src=",
        1,
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(static_site.write("amd.html", html))
    wait_for(lambda: site_rows(server, "chunks", site_id), what="recording with AMD present")
    assert page.evaluate("Object.keys(window.Retrospec).sort()") == ["initRetrospec", "version"]
    assert page.evaluate("Object.keys(window.module.exports)") == []
    assert errors == []


def test_buffer_mode_sends_the_window_before_a_failure_only(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "buffer")
    buffer_ms = 1000
    options = {"sessionSampleRate": 0, "bufferMs": buffer_ms, "flushIntervalMs": 100}
    url = static_site.write("buf.html", sdk_page(server, key, body=FORM, options=options, spy=True))
    page = context.new_page()
    page.goto(url)
    for i in range(6):  # ~3 s of activity: several buffer windows come and go
        page.fill("#name", f"typing {i}")
        page.click("#add")
        page.wait_for_timeout(500)
    assert page.evaluate("window.__ingest.length") == 0, "nothing is sent before a failure"
    assert site_rows(server, "chunks", site_id) == []
    failed_at = page.evaluate("Date.now()")
    page.evaluate("setTimeout(() => explodeLater())")  # ReferenceError, uncaught

    (failure,) = wait_for(lambda: site_rows(server, "failures", site_id), what="buffered failure")
    assert failure["type"] == "ReferenceError"
    session_id = failure["session_id"]
    chunks = chunk_events(server, session_id)
    seq0 = chunks[0][1]
    assert chunks[0][0] == 0 and failure["seq"] == 0
    assert [e["type"] for e in seq0[:2]] == [META, FULL_SNAPSHOT], "the buffer starts replayable"
    start = seq0[0]["timestamp"]
    # At least the window before the failure, and not much more than two windows.
    assert start <= failure["ts"] - buffer_ms
    assert start >= failed_at - 2 * buffer_ms - 500
    assert custom_events(seq0, "retrospec.failure")[0]["ts"] == failure["ts"]
    # After the failure the session records on, like a sampled one.
    page.fill("#name", "after the failure")
    wait_for(lambda: len(chunk_events(server, session_id)) >= 2, what="recording after failure")


def test_inactivity_starts_a_new_session_with_a_full_snapshot(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "inactive")
    options = {"inactivityTimeoutMs": 1000, "flushIntervalMs": 100}
    url = static_site.write("idle.html", sdk_page(server, key, body=FORM, options=options))
    page = context.new_page()
    page.goto(url)
    first = page.evaluate("JSON.parse(sessionStorage['retrospec.session']).id")
    wait_for(lambda: site_rows(server, "chunks", site_id), what="first session")
    page.wait_for_timeout(1500)  # idle past the timeout (the feature under test is time)
    page.keyboard.press("Tab")
    second = page.evaluate("JSON.parse(sessionStorage['retrospec.session']).id")
    assert second != first
    wait_for(lambda: len(site_rows(server, "sessions", site_id)) == 2, what="second session")
    chunks = wait_for(lambda: chunk_events(server, second), what="second session chunks")
    assert chunks[0][0] == 0
    assert [e["type"] for e in chunks[0][1][:2]] == [META, FULL_SNAPSHOT]
    anon = {s["anonymous_id"] for s in site_rows(server, "sessions", site_id)}
    assert len(anon) == 1 and None not in anon  # one browser, one anonymous id


def test_disallowed_origin_stores_nothing(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "locked", ["https://shop.example"])
    url = static_site.write(
        "o.html", sdk_page(server, key, body=FORM, options={"flushIntervalMs": 100}, spy=True)
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.evaluate("rs.captureException(new Error('from the wrong origin'))")
    page.click("#add")
    wait_for(
        lambda: page.evaluate("window.__ingest.filter((r) => r.end).length") >= 1,
        what="the SDK's attempt to be answered",
    )
    # The refusal is readable, so the SDK knows it is final and stops sending.
    assert {r["status"] for r in page.evaluate("window.__ingest") if "status" in r} == {403}
    attempts = len(page.evaluate("window.__ingest"))
    page.evaluate("rs.captureException(new Error('still the wrong origin'))")
    page.click("#add")
    page.evaluate("rs.flush()")
    page.wait_for_timeout(500)
    assert len(page.evaluate("window.__ingest")) == attempts
    assert page.evaluate("window.clicks") == 2
    for table in ("sessions", "chunks", "failures"):
        assert site_rows(server, table, site_id) == []
    assert errors == []


def test_queued_failures_arrive_after_the_server_comes_back(
    serve: Any, static_site: StaticSite, context: Any
) -> None:
    server: ServerProcess = serve(jobs="false")
    site_id, key = new_site(server, "outage")
    options = {"flushIntervalMs": 200, "maxQueueBytes": 30_000}
    url = static_site.write(
        "down.html", sdk_page(server, key, body=FORM, options=options, spy=True)
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    wait_for(lambda: site_rows(server, "chunks", site_id), what="the first snapshot")
    server.stop()

    page.evaluate("rs.captureException(new Error('while the server was down'))")
    page.evaluate("setTimeout(() => { throw new TypeError('also while down'); })")
    page.fill("#name", "still typing")
    page.click("#add")
    page.wait_for_timeout(300)  # let those go into their own batch
    # ~100 KB of new text: past maxQueueBytes, so queued replay data goes, failures stay.
    page.evaluate("document.body.append('BIG-REPLAY-TEXT '.repeat(6000))")
    wait_for(
        lambda: page.evaluate("window.__ingest.some((r) => r.status === 'error')"),
        what="a failed delivery attempt",
    )
    assert page.evaluate("window.clicks") == 1  # the page keeps working
    flushed = page.evaluate("rs.flush().then(() => 'settled')")  # resolves, does not hang
    assert flushed == "settled"

    server.start()
    rows = wait_for(
        lambda: len(r := site_rows(server, "failures", site_id)) >= 2 and r,
        timeout=45,
        what="queued failures after the restart",
    )
    assert sorted(r["message"] for r in rows) == ["also while down", "while the server was down"]
    assert b"BIG-REPLAY-TEXT" not in all_blob_bytes(server)
    seqs = [r["seq"] for r in site_rows(server, "chunks", site_id)]
    assert seqs == sorted(set(seqs))
    assert [e for e in errors if "also while down" not in e] == []


def test_retry_after_is_honoured_on_429(serve: Any, static_site: StaticSite, context: Any) -> None:
    # Burst 1 and 0.5 batches/s: the second batch in a row is refused with Retry-After: 2.
    server: ServerProcess = serve(jobs="false", rate_limit_per_second="0.5", rate_limit_burst="1")
    site_id, key = new_site(server, "limited")
    url = static_site.write(
        "rl.html", sdk_page(server, key, options={"flushIntervalMs": 100}, spy=True)
    )
    page = context.new_page()
    page.goto(url)
    wait_for(lambda: site_rows(server, "chunks", site_id), what="the first batch")
    # Two batches back to back: the second one is refused until the bucket refills.
    page.evaluate(
        "rs.captureException(new Error('first')); rs.flush();"
        "rs.captureException(new Error('second')); rs.flush();"
    )
    wait_for(
        lambda: len(site_rows(server, "failures", site_id)) == 2, what="both failures after a 429"
    )
    attempts = page.evaluate("window.__ingest")
    limited = [i for i, a in enumerate(attempts) if a.get("status") == 429]
    assert limited, attempts
    for i in limited:
        wait_ms = int(attempts[i]["retryAfter"]) * 1000
        assert wait_ms >= 1000
        assert attempts[i + 1]["start"] - attempts[i]["end"] >= wait_ms - 50, attempts
    # The retry is stored before its answer reaches the page, and the SDK keeps sending
    # (attempts still in flight have no status yet): wait for the 202 the page saw.
    wait_for(
        lambda: any(
            a.get("status") == 202 for a in page.evaluate("window.__ingest")[limited[-1] + 1 :]
        ),
        what="a 202 after the last 429",
    )
    attempts = page.evaluate("window.__ingest")
    # Small gzip bodies as text/plain with keepalive: no CORS preflight, survives page unload.
    assert all(a["gzip"] and a["keepalive"] and a["type"] == "text/plain" for a in attempts)


def test_low_disk_507_drops_replay_data_but_delivers_failures(
    serve: Any, static_site: StaticSite, context: Any
) -> None:
    # A free-disk floor no machine has: every batch with events is answered 507.
    server: ServerProcess = serve(jobs="false", min_free_disk_mb=str(10**12))
    site_id, key = new_site(server, "full-disk")
    url = static_site.write(
        "disk.html", sdk_page(server, key, body=FORM, options={"flushIntervalMs": 100}, spy=True)
    )
    page = context.new_page()
    page.goto(url)
    page.click("#add")
    page.evaluate("rs.captureException(new Error('disk is full'))")
    (failure,) = wait_for(lambda: site_rows(server, "failures", site_id), what="the failure")
    assert failure["message"] == "disk is full"
    chunks = site_rows(server, "chunks", site_id)
    assert [c["blob_key"] for c in chunks] == [None]  # the failure came without replay data
    statuses = [a.get("status") for a in page.evaluate("window.__ingest")]
    assert 507 in statuses and statuses[-1] == 202


def test_a_tab_opened_from_a_live_tab_gets_its_own_session(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    # window.open copies sessionStorage to the new tab, like "duplicate tab": sharing the session
    # would make two pages spend the same sequence numbers.
    site_id, key = new_site(server, "tabs")
    url = static_site.write(
        "tab.html", sdk_page(server, key, body=FORM, options={"flushIntervalMs": 100})
    )
    page = context.new_page()
    page.goto(url)
    with context.expect_page() as opened:
        page.evaluate("(url) => { window.open(url); }", url)
    popup = opened.value
    popup.wait_for_load_state()
    ids = [p.evaluate("JSON.parse(sessionStorage['retrospec.session']).id") for p in (page, popup)]
    assert ids[0] != ids[1]
    wait_for(lambda: len(site_rows(server, "sessions", site_id)) == 2, what="two sessions")


SECRET = "s3cr3t-5a7b"
PRIVATE_PAGE = f"""
<a id="reset" href="/reset?code={SECRET}">Reset</a>
<form id="pay" action="/pay?session={SECRET}"><button type="button">Pay</button></form>
<img src="pixel.gif?sig={SECRET}" srcset="pixel.gif?sig={SECRET} 1x" alt="">
<div id="note" contenteditable="true">Write here</div>
<button id="boom" type="button">Boom</button>
<script src="boom.js?token={SECRET}"></script>
"""


def sent_batches(page: Any) -> list[dict[str, Any]]:
    """What the SDK POSTs to ingest, captured in the browser before it leaves (gzip or not)."""
    import gzip

    bodies: list[dict[str, Any]] = []

    def capture(route: Any) -> None:
        raw = route.request.post_data_buffer or b""
        bodies.append(json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw))
        route.continue_()

    page.route("**/api/v1/ingest**", capture)
    return bodies


def test_sdk_sends_no_query_string_and_no_contenteditable_text(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "private")
    (static_site.root / "boom.js").write_text(
        "document.getElementById('boom').addEventListener('click', function explode() {"
        " throw new Error('kaboom'); });"
    )
    (static_site.root / "pixel.gif").write_bytes(b"GIF89a")
    url = static_site.write(
        "private.html", sdk_page(server, key, body=PRIVATE_PAGE, options={"flushIntervalMs": 200})
    )
    page = context.new_page()
    bodies = sent_batches(page)
    page.goto(f"{url}?token={SECRET}#access_token={SECRET}")
    page.click("#note")
    page.keyboard.type("typed private words")
    page.click("#boom")
    page.evaluate("history.pushState({}, '', '/account?invite=" + SECRET + "')")
    page.evaluate("rs.flush()")
    wait_for(lambda: site_rows(server, "failures", site_id), what="the failure")
    page.evaluate("rs.flush()")
    sent = json.dumps(bodies)
    assert bodies and "kaboom" in sent and "boom.js" in sent  # the stack was sent...
    assert SECRET not in sent  # ...without any query string, anywhere
    assert "typed private words" not in sent and "Write here" not in sent
    (failure,) = site_rows(server, "failures", site_id)
    assert SECRET not in json.dumps(dict(failure))


def test_a_507_for_failures_means_retry_later_never_dropped(
    serve: Any, static_site: StaticSite, context: Any
) -> None:
    # Below the disk reserve every batch is refused: the failure must stay queued.
    full: ServerProcess = serve(
        jobs="false", min_free_disk_mb=str(10**12), disk_reserve_mb=str(10**12)
    )
    site_id, key = new_site(full, "retry")
    url = static_site.write(
        "retry.html", sdk_page(full, key, body=FORM, options={"flushIntervalMs": 100}, spy=True)
    )
    page = context.new_page()
    page.goto(url)
    page.evaluate("rs.captureException(new Error('kept for later'))")
    wait_for(
        lambda: [a for a in page.evaluate("window.__ingest") if a.get("status") == 507][1:],
        what="two 507 answers (with replay data, then the failures alone)",
    )
    assert site_rows(full, "failures", site_id) == []
    # The disk has room again (a restart with the default floors, same address and data).
    full.stop()
    roomy = ServerProcess(
        data_dir=full.data_dir, port=full.port, env=server_env(full.data_dir, jobs="false")
    )
    roomy.start()
    try:
        page.evaluate("window.dispatchEvent(new Event('online'))")  # retry now, not in 60 s
        (failure,) = wait_for(lambda: site_rows(roomy, "failures", site_id), what="the failure")
        assert failure["message"] == "kept for later"
    finally:
        roomy.stop()


FRAMEWORKS = """
<script>
function openCard(card) { return card.assignee.name.toUpperCase(); }
// What React error boundaries, Vue's errorHandler and AngularJS's $exceptionHandler do.
function boundary(fn) { try { fn(); } catch (e) { console.error(e); } }
function vueHandler(fn) { try { fn(); } catch (e) { console.error('Error in handler:', e); } }
function angularLog(fn) { try { fn(); } catch (e) { console.error(e.stack); } }
function logAndRethrow(fn) { try { fn(); } catch (e) { console.error(e); throw e; } }
function hooked(fn) { try { fn(); } catch (e) { rs.captureException(e); console.error(e); } }
</script>
"""


def test_errors_frameworks_log_with_console_error_are_errors(
    server: ServerProcess, static_site: StaticSite, context: Any
) -> None:
    site_id, key = new_site(server, "frameworks")
    html = sdk_page(server, key, body=FRAMEWORKS, options={"flushIntervalMs": 200})
    url = static_site.write("frameworks.html", html)
    page = context.new_page()
    page.goto(url)
    page.evaluate(
        """() => {
        boundary(() => openCard({assignee: null}));
        vueHandler(() => openCard({assignee: null}));
        angularLog(() => openCard({assignee: null}));
        setTimeout(() => openCard({}));  // the same bug, uncaught
        setTimeout(() => logAndRethrow(() => openCard({assignee: null})));
        hooked(() => openCard({assignee: null}));
    }"""
    )
    rows = wait_for(
        lambda: (r := site_rows(server, "failures", site_id)) and len(r) >= 6 and r,
        what="6 failures",
    )
    page.wait_for_timeout(500)
    rows = site_rows(server, "failures", site_id)
    kinds = sorted(r["kind"] for r in rows)
    # Logged and rethrown is one failure, so is captured and logged; AngularJS logs text.
    assert kinds == ["console", "custom", "error", "error", "error", "error"], kinds
    payloads = {r["id"]: msgspec.to_builtins(decode_payload(r["payload"])) for r in rows}
    logged = [r for r in rows if r["kind"] in ("error", "custom")]
    for r in logged:
        assert r["type"] == "TypeError"
        assert r["message"].startswith("Cannot read properties of ")
        assert "openCard" in payloads[r["id"]]["stack"]
    contexts = [payloads[r["id"]].get("context") for r in logged]
    assert {"console": "Error in handler:"} in contexts

    # All six are one bug: null and undefined at one site, logged or not, text or Error.
    prints = {
        fingerprint(
            FailureInput(
                kind=r["kind"],
                type=r["type"],
                message=r["message"],
                stack=payloads[r["id"]].get("stack"),
                page_url=r["url"],
            )
        ).hash
        for r in rows
    }
    assert len(prints) == 1
