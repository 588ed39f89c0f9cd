"""Dashboard pages in-process: issue list, issue page, status actions, replay page, sessions,
sites, fragments versus full pages, and the security headers every page carries.

The data are realistic ingest batches from tests/support/checkout.py (rrweb events of a small
shop page plus failures); the browser tests use them too, for hostile recordings that the real
SDK would never send but an attacker holding a public site key can.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import TestClient

from retrospec.app import create_app
from retrospec.jobs.context import JobContext
from retrospec.scheduler import run_job
from retrospec.settings import Settings
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect, transaction
from retrospec.web import issue_pages
from tests.support.accounts import add_user, login
from tests.support.checkout import (
    Post,
    checkout_batch,
    new_session_id,
    now_ms,
    price_error,
    send_checkout_session,
)
from tests.support.data import add_site

# --- fixtures -----------------------------------------------------------------------------------

pytestmark = pytest.mark.backends


def run_jobs(settings: Settings) -> None:
    """Build replays and cluster failures now, as the scheduler would."""
    conn = connect(settings.database)
    try:
        ctx = JobContext(
            settings=settings,
            blobs=BlobStore(settings.effective_blob_url),
            write=DirectWriter(conn).call,
        )
        run_job(ctx, "replays")
        run_job(ctx, "cluster")
    finally:
        conn.close()


def query_one(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> Any:
    conn = connect(settings.database)
    try:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else tuple(row)
    finally:
        conn.close()


@dataclass
class Shop:
    """A signed-in client with three recorded checkout sessions and their issues."""

    client: TestClient[object]
    settings: Settings
    key: str
    sessions: list[str]
    csrf: str
    price_issue: int
    orders_issue: int

    def htmx(self, path: str, **headers: str) -> Any:
        return self.client.get(path, headers={"HX-Request": "true", **headers})


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[object]]:
    with TestClient(create_app(settings, start_jobs=False)) as c:
        yield c


@pytest.fixture
def shop(client: TestClient[object], settings: Settings) -> Shop:
    _, key = add_site(settings, "shop", ["https://shop.example.com"])
    add_user(settings)
    csrf = login(client)
    post: Post = lambda path, body: client.post(path, json=body)  # noqa: E731
    sessions = [
        send_checkout_session(post, key, user={"id": "u1", "email": "ana@example.com"}),
        send_checkout_session(post, key, user={"id": "u2", "name": "Bo"}),
        send_checkout_session(post, key, network=False),
    ]
    run_jobs(settings)
    price = query_one(settings, "SELECT id FROM clusters WHERE title LIKE '%price%'")
    orders = query_one(settings, "SELECT id FROM clusters WHERE kind = 'network'")
    assert price and orders, "clustering did not produce the expected issues"
    return Shop(client, settings, key, sessions, csrf, int(price[0]), int(orders[0]))


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>")


def assert_secure_page(res: Any) -> None:
    """Every dashboard page: CSP without inline script, no caching, no framing."""
    csp = res.headers["content-security-policy"]
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert res.headers["cache-control"] == "no-store"
    assert res.headers["x-frame-options"] == "DENY"
    assert not INLINE_SCRIPT.search(res.text), INLINE_SCRIPT.search(res.text)
    assert not re.search(r"<[^>]+\son[a-z]+=", res.text), "inline event handler attribute"
    assert "//cdn" not in res.text and "https://unpkg" not in res.text


# --- fresh install --------------------------------------------------------------------------------


def test_empty_issue_list_tells_a_new_user_what_to_do(
    client: TestClient[object], settings: Settings
) -> None:
    add_user(settings)
    login(client)
    res = client.get("/")
    assert res.status_code == 200
    assert_secure_page(res)
    text = res.text
    assert "No failures captured yet" in text
    assert 'href="/sites"' in text and "Add a site" in text
    assert "Embed the snippet" in text and 'href="/demo"' in text
    sessions = client.get("/sessions")
    assert "No sessions recorded yet" in sessions.text and "Get the snippet" in sessions.text
    # Asset URLs carry their content hash; nothing comes from a CDN.
    for url in re.findall(r'(?:src|href)="(/assets/[^"]+)"', text):
        assert "?v=" in url, url
        assert client.get(url).status_code == 200


# --- issue list -----------------------------------------------------------------------------------


def test_issue_list_full_page_and_fragment(shop: Shop) -> None:
    full = shop.client.get("/")
    assert full.status_code == 200
    assert_secure_page(full)
    assert full.text.startswith("<!doctype html>")
    assert "Cannot read properties of undefined (reading &#39;price&#39;)" in full.text
    assert "POST /api/orders/" in full.text
    assert 'class="spark"' in full.text and "<rect" in full.text
    assert 'hx-trigger="every 10s"' in full.text
    assert full.headers["vary"].startswith("HX-Request")

    frag = shop.htmx("/?sort=failures")
    assert frag.status_code == 200
    assert frag.text.startswith('<section id="issue-list"')
    assert "<html" not in frag.text and "topbar" not in frag.text
    # The poller keeps the filters it was rendered with.
    assert 'hx-get="/?sort=failures"' in frag.text
    # A history restore (back button with htmx) needs the whole page.
    restore = shop.htmx("/", **{"HX-History-Restore-Request": "true"})
    assert restore.text.startswith("<!doctype html>")


def test_issue_list_filters_search_sort_and_pages(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def titles(path: str) -> list[str]:
        html = shop.htmx(path).text
        return re.findall(r'<span class="title">([^<]+)</span>', html)

    assert len(titles("/")) == 2
    assert len(titles("/?kind=network")) == 1 and "orders" in titles("/?kind=network")[0]
    assert len(titles("/?kind=error")) == 1
    assert titles("/?q=price") and len(titles("/?q=price")) == 1
    assert titles("/?q=nothing-like-this") == []
    assert "No issues match these filters" in shop.htmx("/?q=nothing-like-this").text
    assert len(titles("/?site=shop")) == 2
    assert titles("/?site=no-such-site") == []
    assert titles("/?status=resolved") == []
    by_failures = titles("/?sort=failures")
    assert "price" in by_failures[0]  # 3 failures beat 2
    # Unknown values fall back to the defaults instead of erroring.
    assert shop.client.get("/?status=bogus&sort=bogus&kind=bogus&page=x").status_code == 200

    monkeypatch.setattr(issue_pages, "PAGE_SIZE", 1)
    first = shop.htmx("/?sort=failures").text
    assert "1\u20131 of 2" in first and "page=2" in first
    second = shop.htmx("/?sort=failures&page=2").text
    assert "2\u20132 of 2" in second and "orders" in second


def test_issue_page_shows_the_evidence(shop: Shop) -> None:
    res = shop.client.get(f"/issues/{shop.price_issue}")
    assert res.status_code == 200
    assert_secure_page(res)
    html = res.text
    assert "Cannot read properties of undefined" in html
    assert "applyCoupon" in html  # culprit / in-app frame
    assert 'class="frame in-app"' in html and "Raw stack trace" in html
    assert "vendor.11aa22bb.js" in html  # the library frame stays in the raw stack
    assert "Steps before the failure" in html and "Pay now" in html
    assert "Confidence" in html and "Where it happens" in html
    assert "Chrome" in html and "shop@1.4.2" in html
    assert "Affected sessions" in html
    assert "Watch at the failure" in html
    links = re.findall(r'href="/sessions/([0-9a-f]+)\?t=(\d+)"', html)
    assert {sid for sid, _ in links} == set(shop.sessions)
    assert all(7000 <= int(t) <= 9000 for _, t in links), links
    assert 'id="md-source"' in html and "### Steps before the failure" in html
    assert 'data-copy="md-source"' in html
    assert shop.client.get("/issues/999999").status_code == 404


def test_status_actions_swap_the_badge_and_need_csrf(shop: Shop) -> None:
    url = f"/issues/{shop.price_issue}/status"
    refused = shop.client.post(url, data={"action": "resolve"}, headers={"HX-Request": "true"})
    assert refused.status_code == 403
    headers = {"HX-Request": "true", "X-CSRF-Token": shop.csrf}
    res = shop.client.post(url, data={"action": "resolve"}, headers=headers)
    assert res.status_code == 200
    assert res.text.startswith('<div id="issue-status"') and 'data-status="resolved"' in res.text
    assert "Reopen" in res.text and "Resolved just now" in res.text
    assert "issue-status-changed" in res.headers["hx-trigger"]
    assert f'id="issue-{shop.price_issue}"' in shop.htmx("/?status=resolved").text
    assert f'id="issue-{shop.price_issue}"' not in shop.htmx("/").text
    again = shop.client.post(url, data={"action": "resolve"}, headers=headers)
    assert again.status_code == 400 and "already resolved" in again.text  # toast text
    # Without htmx the form posts and redirects back (works with JavaScript off).
    plain = shop.client.post(
        url, data={"action": "reopen", "csrf_token": shop.csrf}, follow_redirects=False
    )
    assert plain.status_code == 303 and plain.headers["location"] == f"/issues/{shop.price_issue}"
    page = shop.client.get(f"/issues/{shop.price_issue}").text
    assert 'data-status="open"' in page and "Reopened" in page and "by alice" in page
    bogus = shop.client.post(url, data={"action": "delete"}, headers=headers)
    assert bogus.status_code == 400


# --- sessions and replays ----------------------------------------------------------------------


def test_replay_page_has_player_markers_and_failures(shop: Shop) -> None:
    sid = shop.sessions[0]
    res = shop.client.get(f"/sessions/{sid}?t=8100")
    assert res.status_code == 200
    assert_secure_page(res)
    html = res.text
    assert "rrweb-player-2.1.6.umd.min.js?v=" in html and "js/replay.js?v=" in html
    assert 'data-t="8100"' in html
    assert f'data-events-url="/sessions/{sid}/events"' in html
    assert f'data-markers-url="/sessions/{sid}/markers"' in html
    index = re.search(r'<script type="application/json" id="replay-index">(.*?)</script>', html)
    assert index and json.loads(index.group(1))["segments"][0][3] == 1  # starts at a checkpoint
    body = shop.client.get(f"/sessions/{sid}/markers").json()
    assert body["fields"] == ["ts", "offset_ms", "kind", "label"]
    markers = [dict(zip(body["fields"], m, strict=True)) for m in body["markers"]]
    kinds = {m["kind"] for m in markers}
    assert {"failure", "click"} <= kinds, kinds
    failure = next(m for m in markers if m["kind"] == "failure")
    assert 7000 <= failure["offset_ms"] <= 9000
    # The page itself lists the same markers (the whole list here: fewer than a screen).
    assert html.count('class="marker kind-') == len(markers)
    assert "ana@example.com" in html
    assert "Console &amp; network" in html and "502" in html
    assert f'href="/issues/{shop.price_issue}"' in html


def test_events_endpoint_serves_json_and_gzip_with_etag(shop: Shop) -> None:
    url = f"/sessions/{shop.sessions[0]}/events"
    res = shop.client.get(url, headers={"accept-encoding": "gzip"})
    assert res.status_code == 200
    assert res.headers["content-encoding"] == "gzip"
    assert res.headers["content-type"].startswith("application/json")
    events = res.json()  # httpx inflates
    assert events[0]["type"] == 4 and any(e["type"] == 2 for e in events)
    refused = shop.client.get(url, headers={"accept-encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers
    plain = shop.client.get(url, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == events
    again = shop.client.get(url, headers={"if-none-match": res.headers["etag"]})
    assert again.status_code == 304
    assert shop.client.get("/sessions/not..valid/events").status_code == 404
    assert shop.client.get("/sessions/abcdefgh99999/events").status_code == 404


def test_segments_go_out_as_stored_zstd_or_cached_gzip(shop: Shop) -> None:
    sid = shop.sessions[0]
    index = shop.client.get(f"/sessions/{sid}/segments").json()["index"]
    assert index["segments"][0][3] == 1 and len(index["rev"]) == 16
    url = f"/sessions/{sid}/events?seg=0&rev={index['rev']}"
    every = shop.client.get(f"/sessions/{sid}/events", headers={"accept-encoding": "identity"})
    conn = connect(shop.settings.database)
    try:
        key = conn.execute("SELECT replay_key FROM sessions WHERE id = ?", (sid,)).fetchone()[0]
    finally:
        conn.close()
    stored = BlobStore(shop.settings.effective_blob_url).get_raw(key)

    zstd = shop.client.get(url, headers={"accept-encoding": "gzip, deflate, br, zstd"})
    assert zstd.status_code == 200 and zstd.headers["content-encoding"] == "zstd"
    assert "Accept-Encoding" in zstd.headers["vary"] and "Cookie" in zstd.headers["vary"]
    assert zstd.json() == every.json()  # one segment: the whole replay
    with shop.client.stream("GET", url, headers={"accept-encoding": "zstd"}) as raw:
        assert b"".join(raw.iter_raw()) == stored  # the stored frame, not recompressed

    gz = shop.client.get(url, headers={"accept-encoding": "gzip;q=0.8, zstd;q=0"})
    assert gz.headers["content-encoding"] == "gzip" and gz.json() == every.json()
    again = shop.client.get(url, headers={"accept-encoding": "gzip"})
    assert again.content == gz.content  # the cached gzip
    plain = shop.client.get(url, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == every.json()
    # One validator per representation.
    assert len({zstd.headers["etag"], gz.headers["etag"], plain.headers["etag"]}) == 3
    cached = shop.client.get(
        url, headers={"accept-encoding": "gzip", "if-none-match": gz.headers["etag"]}
    )
    assert cached.status_code == 304

    # A rebuilt replay (another rev), a segment that is not there, a bad number.
    stale = shop.client.get(f"/sessions/{sid}/events?seg=0&rev=0123456789abcdef")
    assert stale.status_code == 404 and "rebuilt" in stale.text  # the dashboard's error page
    assert shop.client.get(f"/sessions/{sid}/events?seg=7").status_code == 404
    for bad in ("-1", "x", ""):
        res = shop.client.get(f"/sessions/{sid}/events?seg={bad}")
        assert res.status_code == 400 and "seg must be a segment number" in res.text
    assert shop.client.get("/sessions/abcdefgh99999/segments").status_code == 404


def test_expired_replay_keeps_the_evidence(shop: Shop) -> None:
    sid = shop.sessions[1]
    conn = connect(shop.settings.database)
    with transaction(conn):  # what retention leaves behind
        conn.execute(
            "UPDATE sessions SET replay_status = 'expired', replay_key = NULL, expired_at = ? "
            "WHERE id = ?",
            (int(time.time() * 1000), sid),
        )
    conn.close()
    html = shop.client.get(f"/sessions/{sid}").text
    assert "This replay has expired" in html
    assert "rrweb-player" not in html  # no player to load
    assert "Pay now" in html and "Cannot read properties" in html  # markers and failures stay
    assert shop.client.get(f"/sessions/{sid}/events").status_code == 404
    issue = shop.client.get(f"/issues/{shop.price_issue}").text
    assert "Replay expired" in issue


def test_pending_replay_says_so_and_polls(shop: Shop) -> None:
    post: Post = lambda path, body: shop.client.post(path, json=body)  # noqa: E731
    sid = send_checkout_session(post, shop.key)
    html = shop.client.get(f"/sessions/{sid}").text
    assert "The replay is being prepared" in html
    assert f'hx-get="/sessions/{sid}/state?key=' in html
    state = shop.htmx(f"/sessions/{sid}/state?key=none")
    assert state.status_code == 200
    run_jobs(shop.settings)
    assert shop.htmx(f"/sessions/{sid}/state?key=none").headers.get("hx-refresh") == "true"


def test_session_list_filters(shop: Shop) -> None:
    full = shop.client.get("/sessions")
    assert full.status_code == 200
    assert_secure_page(full)
    assert full.text.count('class="tr session-row"') == 3
    assert "ana@example.com" in full.text and "Anonymous user" in full.text
    frag = shop.htmx("/sessions?user=u2")
    assert frag.text.startswith('<section id="session-list"')
    assert frag.text.count('class="tr session-row"') == 1 and "Bo" in frag.text
    assert shop.htmx("/sessions?failures=1").text.count('class="tr session-row"') == 3
    assert shop.htmx("/sessions?site=shop").text.count('class="tr session-row"') == 3
    assert "No sessions match" in shop.htmx("/sessions?site=nope").text


# --- sites -------------------------------------------------------------------------------------


def test_sites_add_edit_origins_snippet_and_rotate(shop: Shop) -> None:
    headers = {"HX-Request": "true", "X-CSRF-Token": shop.csrf}
    listing = shop.client.get("/sites")
    assert_secure_page(listing)
    assert "YOUR_INGEST_KEY" in listing.text and shop.key not in listing.text
    assert "/sdk/retrospec.js" in listing.text and "/sdk/retrospec.mjs" in listing.text

    added = shop.client.post(
        "/sites",
        data={"name": "blog", "origins": "https://blog.example.com\nhttp://localhost:3000"},
        headers=headers,
    )
    assert added.status_code == 200 and added.text.startswith('<div id="site-list"')
    new_key = re.search(r'id="key-[^"]+">(rsk_[^<]+)<', added.text)
    assert new_key and "shown only once" in added.text
    assert f'apiKey: "{new_key.group(1)}"' in added.text  # the snippet carries the new key
    assert new_key.group(1) not in shop.client.get("/sites").text  # ...once
    dup = shop.client.post("/sites", data={"name": "blog"}, headers=headers)
    assert dup.status_code == 409 and "already exists" in dup.text
    bad = shop.client.post("/sites", data={"name": "x", "origins": "ftp://nope"}, headers=headers)
    assert bad.status_code == 400

    site_id = query_one(shop.settings, "SELECT id FROM sites WHERE name = 'shop'")[0]
    saved = shop.client.post(
        f"/sites/{site_id}/origins",
        data={"origins": "https://shop.example.com, https://m.shop.example.com"},
        headers=headers,
    )
    assert saved.status_code == 200 and "Allowed origins saved" in saved.text
    assert "https://m.shop.example.com" in saved.text
    invalid = shop.client.post(
        f"/sites/{site_id}/origins", data={"origins": "not a url"}, headers=headers
    )
    assert invalid.status_code == 200 and "origin must look like" in invalid.text

    body = checkout_batch(new_session_id(), 0, now_ms(), [], [price_error(now_ms())])
    assert shop.client.post(f"/api/v1/ingest?key={shop.key}", json=body).status_code == 202
    rotated = shop.client.post(f"/sites/{site_id}/rotate", headers=headers)
    assert rotated.status_code == 200 and "New key issued" in rotated.text
    fresh = re.search(r'id="key-[^"]+">(rsk_[^<]+)<', rotated.text)
    assert fresh and fresh.group(1) != shop.key
    # The key cache was cleared: the old key stops at once, the new one works.
    old = shop.client.post(f"/api/v1/ingest?key={shop.key}", json=body)
    assert old.status_code == 401
    body = checkout_batch(new_session_id(), 0, now_ms(), [], [price_error(now_ms())])
    assert shop.client.post(f"/api/v1/ingest?key={fresh.group(1)}", json=body).status_code == 202
    assert shop.client.post("/sites/demo/rotate", headers=headers).status_code == 400


def test_the_sites_page_shows_each_sites_sentry_dsn(shop: Shop) -> None:
    headers = {"HX-Request": "true", "X-CSRF-Token": shop.csrf}
    site_id, project_id, dsn_key = query_one(
        shop.settings, "SELECT id, project_id, dsn_key FROM sites WHERE name = 'shop'"
    )
    # The configured address, never the request's Host header (snippets get copied).
    base = shop.settings.base_url.split("://", 1)[1]
    dsn = f"http://{dsn_key}@{base}/{project_id}"
    listing = shop.client.get("/sites")
    assert f'id="dsn-{site_id}">{dsn}<' in listing.text  # public: shown at any time
    assert f'dsn: "{dsn}"' in listing.text and "replayIntegration" in listing.text
    session = b'{}\n{"type":"session"}\n{"sid":"x"}'
    sent = shop.client.post(f"/api/{project_id}/envelope/?sentry_key={dsn_key}", content=session)
    assert sent.status_code == 200
    assert "Taken but not stored in the last 7 days: session 1" in shop.client.get("/sites").text
    rotated = shop.client.post(f"/sites/{site_id}/rotate", headers=headers)
    assert dsn not in rotated.text
    (new_key,) = query_one(shop.settings, "SELECT dsn_key FROM sites WHERE id = ?", (site_id,))
    assert f"http://{new_key}@{base}/{project_id}" in rotated.text


# --- merge and unmerge -------------------------------------------------------------------------


def test_merge_and_unmerge_from_the_issue_page(shop: Shop) -> None:
    target, source = shop.price_issue, shop.orders_issue
    url = f"/issues/{target}/merge"
    refused = shop.client.post(url, data={"sources": str(source)}, headers={"HX-Request": "true"})
    assert refused.status_code == 403  # no CSRF token
    headers = {"HX-Request": "true", "X-CSRF-Token": shop.csrf}
    before = query_one(shop.settings, "SELECT failure_count FROM clusters WHERE id = ?", (target,))
    moved = query_one(shop.settings, "SELECT failure_count FROM clusters WHERE id = ?", (source,))
    res = shop.client.post(url, data={"sources": f"#{source}"}, headers=headers)
    assert res.status_code == 200
    assert f"Merged #{source} into this issue." in res.text
    assert f'href="/issues/{source}">#{source}</a>' in res.text
    assert f"Merged #{source} into this" in res.text and "by alice" in res.text  # history
    after = query_one(shop.settings, "SELECT failure_count FROM clusters WHERE id = ?", (target,))
    assert after[0] == before[0] + moved[0]
    assert f'id="issue-{source}"' not in shop.htmx("/?status=all").text
    merged_page = shop.client.get(f"/issues/{source}").text
    assert f'Merged into <a href="/issues/{target}">issue #{target}</a>' in merged_page

    again = shop.client.post(url, data={"sources": str(source)}, headers=headers)
    assert again.status_code == 400 and "already merged" in again.text
    for bad in ("", "12; drop", "1" * 13, str(target)):
        res = shop.client.post(url, data={"sources": bad}, headers=headers)
        assert res.status_code == 400, bad

    undo = shop.client.post(
        f"/issues/{target}/unmerge", data={"source": str(source), "csrf_token": shop.csrf},
        follow_redirects=False,
    )  # fmt: skip
    assert undo.status_code == 303 and undo.headers["location"] == f"/issues/{target}"
    restored = query_one(
        shop.settings, "SELECT status, failure_count FROM clusters WHERE id = ?", (source,)
    )
    assert restored == ("open", moved[0])
    assert f'id="issue-{source}"' in shop.htmx("/?status=all").text
