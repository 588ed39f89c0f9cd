"""The cluster job end to end: real ingest rows in, clusters, counts and promoted issues out."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from retrospec.clock import day_of, now_ms
from retrospec.issues import clustering
from retrospec.issues.fingerprint import fingerprint
from retrospec.jobs.context import JobContext, JobResult
from retrospec.scheduler import run_job
from retrospec.settings import Settings
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import Writer, connect
from retrospec.storage.migrations import prepare_database
from tests.support.data import make_settings
from tests.support.envelopes import (
    CHROME_UA,
    CHROME_V1,
    CHROME_V2,
    COUPON_CHROME,
    COUPON_MSG,
    FIREFOX_UA,
    FIREFOX_V1,
    FIREFOX_V2,
    PRICE_CHROME,
    PRICE_FIREFOX,
    error,
    network,
)
from tests.support.feeds import Feed, make_feed, sid

T = TypeVar("T")

pytestmark = pytest.mark.backends


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    """A Feed on the test's fresh database."""
    f = make_feed(settings)
    yield f
    f.conn.close()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread.

    Not asyncio.run here: while a browser test's session-scoped playwright is alive, this
    thread already has a running event loop.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --- grouping, end to end through the job ----------------------------------------------------


def test_same_bug_two_deploys_and_two_browsers_is_one_cluster(feed: Feed) -> None:
    feed.send(sid(), error(CHROME_V1), user="u1")
    feed.send(sid(), error(CHROME_V2), user="u2")
    feed.send(sid(), error(FIREFOX_V1, PRICE_FIREFOX), ua=FIREFOX_UA, user="u3")
    feed.send(sid(), error(FIREFOX_V2, PRICE_FIREFOX), ua=FIREFOX_UA, user="u3", release="1.5.0")
    result = feed.cluster()
    assert result.items == 4 and result.errors == 0
    [cluster] = feed.clusters()
    assert (cluster["failure_count"], cluster["session_count"], cluster["user_count"]) == (4, 4, 3)
    assert cluster["kind"] == "error" and cluster["basis"] == "stack"
    assert cluster["title"] == f"TypeError: {PRICE_CHROME}"
    assert cluster["culprit"] == "lineTotal (/static/js/main.js)"
    assert cluster["status"] == "open"
    assert feed.value("SELECT count(*) FROM failures WHERE cluster_id IS NULL") == 0
    assert feed.value("SELECT count(DISTINCT fingerprint) FROM failures") == 1
    facets = feed.rows("SELECT facet, value, count FROM cluster_facets ORDER BY facet, value")
    assert facets == [
        ("browser", "Chrome 126", 2),
        ("browser", "Firefox 131", 2),
        ("os", "Linux", 2),
        ("os", "Windows", 2),
        ("release", "1.4.2", 3),
        ("release", "1.5.0", 1),
        ("url", "/cart", 4),
    ]
    assert cluster["frames"] is None  # kept in cluster_frames so clusters rows stay small
    frames = feed.frames(cluster["id"])
    assert frames[0]["function"] == "lineTotal" and frames[0]["in_app"] is True
    assert set(frames[0]) == {"function", "path", "raw_file", "line", "column", "in_app"}


def test_two_bugs_in_the_same_file_are_two_clusters(feed: Feed) -> None:
    feed.send(sid(), error(CHROME_V1))
    feed.send(sid(), error(COUPON_CHROME, COUPON_MSG))
    feed.cluster()
    titles = sorted(c["title"] for c in feed.clusters())
    assert titles == [f"TypeError: {COUPON_MSG}", f"TypeError: {PRICE_CHROME}"]


def test_reading_a_different_property_is_a_different_cluster(feed: Feed) -> None:
    # Two reads in one function: different properties at different columns.
    for prop, col in (("x", "104455"), ("y", "104460"), ("x", "104455")):
        stack = CHROME_V1.replace(":2:104455", f":2:{col}")
        feed.send(sid(), error(stack, f"Cannot read properties of undefined (reading '{prop}')"))
    feed.cluster()
    counts = sorted((c["title"][-4:], c["failure_count"]) for c in feed.clusters())
    assert counts == [("'x')", 2), ("'y')", 1)]


def test_one_expression_failing_with_different_property_names_is_one_cluster(feed: Feed) -> None:
    """`record[field]` without a source map: the same exact position in one deployed file says
    it is one expression; the property names it learns lead to it from the next deploy too."""

    def read(prop: str, stack: str = CHROME_V1) -> dict[str, object]:
        return error(stack, f"Cannot read properties of undefined (reading '{prop}')")

    for prop in ("price", "rating", "stock"):
        feed.send(sid(), read(prop))
    feed.cluster(batch_size=1)  # one failure per batch: learnt across batches
    feed.send(sid(), read("rating", CHROME_V2))  # the next deploy, where it moved
    feed.send(sid(), read("weight", CHROME_V2))  # a name first seen there, at the same spot
    feed.cluster()
    [cluster] = feed.clusters()
    assert cluster["failure_count"] == 5
    assert feed.value("SELECT count(*) FROM cluster_positions") == 2  # one per deploy
    # Two bugs at one position of another function stay apart from it.
    other = CHROME_V1.replace("at lineTotal", "at couponTotal").replace(":2:104455", ":2:500")
    feed.send(sid(), error(other, "Cannot read properties of undefined (reading 'code')"))
    feed.cluster()
    assert len(feed.clusters()) == 2


def test_network_failures_group_by_path_template_and_status_class(feed: Feed) -> None:
    api = "https://api.shop.example.com/api/orders"
    feed.send(sid(), network(f"{api}/17", 500))
    feed.send(sid(), network(f"{api}/942?expand=lines", 500))
    feed.send(sid(), network(f"{api}/942", 404))
    feed.cluster()
    by_title = {c["title"]: c for c in feed.clusters()}
    assert set(by_title) == {
        "GET api.shop.example.com/api/orders/:id → 5xx",
        "GET api.shop.example.com/api/orders/:id → 4xx",
    }
    five = by_title["GET api.shop.example.com/api/orders/:id → 5xx"]
    assert five["failure_count"] == 2 and five["kind"] == "network" and five["basis"] == "network"


def test_clusters_are_per_site(settings: Settings, feed: Feed) -> None:
    other = make_feed(settings, "blog")
    try:
        feed.send(sid(), error())
        other.send(sid(), error())
        feed.cluster()
        assert len(feed.clusters()) == 2
        assert len({c["fingerprint"] for c in feed.clusters()}) == 1
    finally:
        other.conn.close()


def test_unhandled_rejection_joins_the_error_cluster_and_kind_is_the_family(feed: Feed) -> None:
    feed.send(sid(), error())
    feed.send(sid(), {**error(), "kind": "unhandledrejection"})
    feed.send(sid(), {"kind": "console", "ts": 1, "message": "Warning: each child needs a key"})
    feed.cluster()
    kinds = sorted((c["kind"], c["failure_count"]) for c in feed.clusters())
    assert kinds == [("console", 1), ("error", 2)]


# --- promotion and lifecycle ------------------------------------------------------------------


def test_one_failure_is_a_candidate_and_another_session_promotes_it(feed: Feed) -> None:
    feed.send(sid(), error())
    feed.cluster()
    [c] = feed.clusters()
    assert c["status"] == "candidate" and c["promoted_at"] is None
    assert feed.value("SELECT count(*) FROM issue_events") == 0
    feed.send(sid(), error(CHROME_V2))
    feed.cluster()
    [c] = feed.clusters()
    assert c["status"] == "open" and c["promoted_at"] is not None
    assert (c["failure_count"], c["session_count"]) == (2, 2)
    assert feed.rows("SELECT cluster_id, action, actor FROM issue_events") == [
        (c["id"], "promoted", None)
    ]


def test_the_same_session_repeating_a_failure_does_not_promote(feed: Feed) -> None:
    looping = sid()
    feed.send(looping, error(), error(), error())
    feed.send(looping, error())
    feed.cluster()
    [c] = feed.clusters()
    assert (c["status"], c["failure_count"], c["session_count"]) == ("candidate", 4, 1)
    assert feed.value("SELECT failures FROM cluster_sessions") == 4
    feed.send(sid(), error())  # a second session: now it is a repeatable bug
    feed.cluster()
    [c] = feed.clusters()
    assert (c["status"], c["failure_count"], c["session_count"]) == ("open", 5, 2)


def test_both_similar_failures_in_one_batch_promote_at_once(feed: Feed) -> None:
    feed.send(sid(), error())
    feed.send(sid(), error())
    feed.cluster()
    assert feed.clusters()[0]["status"] == "open"


def test_site_override_and_setting_of_promote_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", promote_after=1)
    prepare_database(settings.database)
    feed = make_feed(settings)
    strict = make_feed(settings, "strict")
    try:
        strict.conn.execute("UPDATE sites SET promote_after = 3 WHERE id = ?", (strict.site.id,))
        feed.send(sid(), error())  # promote_after = 1: every failure is an issue
        for _ in range(2):
            strict.send(sid(), error())
        feed.cluster()
        status = dict(feed.rows("SELECT site_id, status FROM clusters"))
        assert status == {feed.site.id: "open", strict.site.id: "candidate"}
        strict.send(sid(), error())
        feed.cluster()
        assert dict(feed.rows("SELECT site_id, status FROM clusters"))[strict.site.id] == "open"
    finally:
        feed.conn.close()
        strict.conn.close()


def test_promote_after_counts_failures_once_two_sessions_are_in(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", promote_after=3)
    prepare_database(settings.database)
    feed = make_feed(settings)
    try:
        a = sid()
        feed.send(a, error(), error())
        feed.send(sid(), error())
        feed.cluster()
        assert feed.clusters()[0]["status"] == "open"  # 3 failures, 2 sessions
        assert clustering.should_promote(3, 1, 3) is False
        assert clustering.should_promote(2, 2, 3) is False
        assert clustering.should_promote(1, 1, 1) is True
    finally:
        feed.conn.close()


def promoted(feed: Feed) -> int:
    """Send two similar failures from two sessions and return the issue id."""
    feed.send(sid(), error())
    feed.send(sid(), error())
    feed.cluster()
    [c] = feed.clusters()
    assert c["status"] == "open"
    return int(c["id"])


def test_resolved_issue_reopens_as_a_regression(feed: Feed) -> None:
    cid = promoted(feed)
    assert feed.set_status(cid, "resolve") == "resolved"
    feed.send(sid(), error(CHROME_V2), received_at=now_ms() + 1000)
    result = feed.cluster()
    assert result.details["regressed"] == 1
    [c] = feed.clusters()
    assert c["status"] == "open" and c["regression"] == 1 and c["regressed_at"] is not None
    assert c["failure_count"] == 3
    actions = [a for (a,) in feed.rows("SELECT action FROM issue_events ORDER BY id")]
    assert actions == ["promoted", "resolved", "regressed"]
    # Resolving again clears the flag until the next recurrence.
    feed.set_status(cid, "resolve")
    assert feed.clusters()[0]["regression"] == 0


def test_a_failure_received_before_the_resolution_is_not_a_regression(feed: Feed) -> None:
    cid = promoted(feed)
    late = now_ms() - 60_000  # received a minute ago, clustered only after the resolution
    feed.set_status(cid, "resolve")
    feed.send(sid(), error(), received_at=late)
    feed.cluster()
    [c] = feed.clusters()
    assert c["status"] == "resolved" and c["failure_count"] == 3 and c["regression"] == 0


def test_ignored_stays_ignored_while_counts_grow(feed: Feed) -> None:
    cid = promoted(feed)
    feed.set_status(cid, "ignore")
    feed.send(sid(), error(), user="someone-new", received_at=now_ms() + 1000)
    feed.cluster()
    [c] = feed.clusters()
    assert c["status"] == "ignored" and c["regression"] == 0
    assert (c["failure_count"], c["session_count"], c["user_count"]) == (3, 3, 3)


def test_sample_follows_the_newest_failure_with_a_stack(feed: Feed) -> None:
    feed.send(sid(), error(CHROME_V1))
    feed.cluster()
    first = feed.value("SELECT max(id) FROM failures")
    feed.send(sid(), error(CHROME_V2))
    feed.cluster()
    newest = feed.value("SELECT max(id) FROM failures")
    [c] = feed.clusters()
    assert c["sample_failure_id"] == newest != first
    assert "7d8e9f00" in feed.frames(c["id"])[0]["raw_file"]


def test_days_and_first_last_seen_use_the_server_clock(feed: Feed) -> None:
    day = 86_400_000
    t0 = 1_732_000_000_000
    feed.send(sid(), error(ts=5), received_at=t0)  # a browser with a broken clock
    feed.send(sid(), error(ts=5), received_at=t0 + day)
    feed.send(sid(), error(ts=5), received_at=t0 + day + 10)
    feed.cluster()
    [c] = feed.clusters()
    assert (c["first_seen_at"], c["last_seen_at"]) == (t0, t0 + day + 10)
    assert feed.rows("SELECT day, count FROM cluster_days ORDER BY day") == [
        (day_of(t0), 1),
        (day_of(t0) + 1, 2),
    ]


# --- idempotency, crashes and overlapping runs ------------------------------------------------


def populate(feed: Feed) -> None:
    """A fixed mix: 4 clusters, repeats in one session, several users, 11 failures."""
    t = 1_732_600_000_000
    s = [f"session-{n:04d}" for n in range(6)]
    feed.send(s[0], error(CHROME_V1), error(CHROME_V1), user="ada", received_at=t)
    feed.send(s[1], error(COUPON_CHROME, COUPON_MSG), user="bob", received_at=t + 1)
    feed.send(s[2], network("https://shop.example.com/api/orders/17", 500), received_at=t + 2)
    feed.send(s[3], error(FIREFOX_V2, PRICE_FIREFOX), ua=FIREFOX_UA, user="cy", received_at=t + 3)
    feed.send(s[4], network("https://shop.example.com/api/orders/9", 503), received_at=t + 4)
    feed.send(s[0], error(CHROME_V2), user="ada", received_at=t + 5)
    feed.send(s[5], error(COUPON_CHROME, COUPON_MSG), user="bob", received_at=t + 6)
    feed.send(s[5], error(CHROME_V1), network("https://shop.example.com/x", 404), received_at=t + 7)
    feed.send(s[1], error(COUPON_CHROME, COUPON_MSG), user="bob", received_at=t + 8)


def snapshot(feed: Feed) -> dict[str, Any]:
    """Everything the job writes, keyed by fingerprint so cluster ids do not matter."""
    q = feed.rows
    return {
        "clusters": q(
            "SELECT fingerprint, kind, title, status, failure_count, session_count, user_count, "
            "first_seen_at, last_seen_at, regression FROM clusters ORDER BY fingerprint"
        ),
        "sessions": q(
            "SELECT c.fingerprint, s.session_id, s.failures, s.last_seen_at FROM cluster_sessions "
            "s JOIN clusters c ON c.id = s.cluster_id ORDER BY 1, 2"
        ),
        "users": q(
            "SELECT c.fingerprint, u.user_key FROM cluster_users u "
            "JOIN clusters c ON c.id = u.cluster_id ORDER BY 1, 2"
        ),
        "facets": q(
            "SELECT c.fingerprint, f.facet, f.value, f.count FROM cluster_facets f "
            "JOIN clusters c ON c.id = f.cluster_id ORDER BY 1, 2, 3"
        ),
        "days": q(
            "SELECT c.fingerprint, d.day, d.count FROM cluster_days d "
            "JOIN clusters c ON c.id = d.cluster_id ORDER BY 1, 2"
        ),
        "failures": q(
            "SELECT f.id, f.fingerprint, c.fingerprint FROM failures f "
            "LEFT JOIN clusters c ON c.id = f.cluster_id ORDER BY f.id"
        ),
        "events": q(
            "SELECT c.fingerprint, e.action FROM issue_events e "
            "JOIN clusters c ON c.id = e.cluster_id ORDER BY 1, 2"
        ),
    }


@pytest.fixture
def clean_snapshot(tmp_path: Path) -> dict[str, Any]:
    """The state after one clean run over populate()'s data, in its own database."""
    settings = make_settings(tmp_path / "clean")
    prepare_database(settings.database)
    feed = make_feed(settings)
    try:
        populate(feed)
        result = feed.cluster()
        assert result.items == 11
        snap = snapshot(feed)
        assert len(snap["clusters"]) == 4
        assert all(row[1] is not None for row in snap["failures"])
        return snap
    finally:
        feed.conn.close()


class Boom(Exception):
    """The injected crash."""


def test_a_run_interrupted_midway_then_rerun_matches_a_clean_run(
    feed: Feed, clean_snapshot: dict[str, Any]
) -> None:
    populate(feed)
    calls: list[list[int]] = []

    def crash_in_second_batch(ids: list[int]) -> None:
        calls.append(ids)
        if len(calls) == 2:
            raise Boom("power cut")

    with pytest.raises(Boom):
        feed.cluster(batch_size=4, midway=crash_in_second_batch)
    # The first batch committed, the second rolled back whole (failures and counters alike).
    assert feed.value("SELECT count(*) FROM failures WHERE cluster_id IS NOT NULL") == 4
    assert feed.value("SELECT sum(failure_count) FROM clusters") == 4
    result = feed.cluster(batch_size=4)
    assert result.items == 7
    assert snapshot(feed) == clean_snapshot
    assert feed.cluster().items == 0  # idempotent: nothing left to do
    assert snapshot(feed) == clean_snapshot


def test_a_crash_in_the_only_batch_leaves_nothing_behind(feed: Feed) -> None:
    populate(feed)

    def crash(ids: list[int]) -> None:
        raise Boom("killed")

    with pytest.raises(Boom):
        feed.cluster(midway=crash)
    for table in ("clusters", "cluster_sessions", "cluster_facets", "cluster_days"):
        assert feed.value(f"SELECT count(*) FROM {table}") == 0
    assert feed.value("SELECT count(*) FROM failures WHERE fingerprint IS NOT NULL") == 0


def test_overlapping_runs_do_not_double_count(feed: Feed, clean_snapshot: dict[str, Any]) -> None:
    populate(feed)
    inner: list[JobResult] = []

    def other_run_wins(ids: list[int]) -> None:
        # Between this run's read and its write, a whole other run (the CLI while the server
        # runs the job) clusters the same failures.
        if not inner:
            inner.append(feed.cluster())

    result = feed.cluster(before_write=other_run_wins)
    assert inner[0].items == 11
    assert result.items == 0 and result.details["skipped"] == 11
    assert snapshot(feed) == clean_snapshot


def test_concurrent_runs_through_the_server_writer(
    feed: Feed, clean_snapshot: dict[str, Any]
) -> None:
    populate(feed)
    writer = Writer(feed.settings.database)
    writer.start()
    try:
        results: list[JobResult] = []
        barrier = threading.Barrier(2)

        def together(ids: list[int]) -> None:
            # Line both runs up on the same batch where possible (lock step is not guaranteed).
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=0.5)

        def run() -> None:
            ctx = JobContext(
                settings=feed.settings,
                blobs=BlobStore(feed.settings.effective_blob_url),
                write=writer.call,
                options={"batch_size": 3, "before_write": together},
            )
            results.append(clustering.run(ctx))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        writer.stop()
    assert len(results) == 2
    assert sum(r.items for r in results) == 11
    assert snapshot(feed) == clean_snapshot


def test_run_job_records_the_run(feed: Feed) -> None:
    populate(feed)
    result = run_job(feed.context(), "cluster")
    assert result.items == 11
    row = feed.rows("SELECT job, status, items, errors FROM job_runs")
    assert row == [("cluster", "ok", 11, 0)]
    assert "11 failures" in result.message


def test_a_stack_the_fingerprinter_chokes_on_still_gets_clustered(
    feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed.send(sid(), error(stack="TypeError: boom\n    at explode (https://x.example/a.js:1:1)"))
    real = fingerprint

    def picky(failure: Any) -> Any:
        if failure.stack:
            raise ValueError("parser bug")
        return real(failure)

    monkeypatch.setattr(clustering, "fingerprint", picky)
    clustering._cached_fingerprint.cache_clear()
    result = feed.cluster()
    assert (result.items, result.errors) == (1, 1)
    assert feed.clusters()[0]["basis"] == "message"
    assert feed.value("SELECT count(*) FROM failures WHERE cluster_id IS NULL") == 0


def test_batches_page_through_everything(feed: Feed) -> None:
    for n in range(7):
        feed.send(sid(), error(), network(f"https://shop.example.com/api/item/{n}", 500))
    result = feed.cluster(batch_size=3, batch_max=3)
    assert result.items == 14 and result.details["batches"] == 5
    counts = sorted(c["failure_count"] for c in feed.clusters())
    assert counts == [7, 7]


def test_a_backlog_grows_the_claimed_batch(feed: Feed) -> None:
    for n in range(20):
        feed.send(sid(), error(), network(f"https://shop.example.com/api/item/{n}", 500))
    # 40 failures: batches of 2, 8, then 30 (all that is left, under the cap of 32).
    result = feed.cluster(batch_size=2, batch_max=32)
    assert result.items == 40 and result.details["batches"] == 3
    assert sorted(c["failure_count"] for c in feed.clusters()) == [20, 20]


def test_the_next_batch_is_fingerprinted_while_the_current_one_is_written(feed: Feed) -> None:
    # A backlog costs max(fingerprinting, writing), not their sum: batch 2's read and
    # fingerprints start before batch 1 is written.
    for n in range(10):
        feed.send(sid(), error(), network(f"https://shop.example.com/api/item/{n}", 500))
    ctx = feed.context(batch_size=4, batch_max=4)
    started = threading.Semaphore(0)
    calls: list[str] = []

    def compute(fn: Any, *args: Any) -> Any:
        calls.append("compute")
        started.release()
        return fn(*args)

    def writing(ids: list[int]) -> None:
        # Batch 1 is about to be written: batch 2's fingerprinting has been asked for.
        if calls.count("write") == 0:
            assert started.acquire(timeout=10) and started.acquire(timeout=10)
        calls.append("write")

    ctx.compute = compute
    ctx.options["midway"] = writing
    result = clustering.run(ctx)
    assert result.items == 20 and result.details["batches"] == 5
    assert calls[:3] == ["compute", "compute", "write"]
    assert sorted(c["failure_count"] for c in feed.clusters()) == [10, 10]


def test_reading_a_batch_walks_the_unclustered_index_not_the_backlog(
    feed: Feed, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite query plans (EXPLAIN QUERY PLAN); PostgreSQL plans by its statistics")
    # A batch read must cost its size, not the backlog's: no sort of every unclustered row.
    plans = {
        "batch": (clustering._SELECT_BATCH, (0, 100)),
        "claim check": (clustering._STILL_UNCLAIMED, (1, 100)),
    }
    for name, (sql, params) in plans.items():
        plan = " ".join(str(r[3]) for r in feed.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "failures_unclustered" in plan and "TEMP B-TREE" not in plan, (name, plan)
    per_issue = "SELECT id FROM failures WHERE cluster_id = ? ORDER BY received_at DESC LIMIT 5"
    plan = " ".join(str(r[3]) for r in feed.conn.execute(f"EXPLAIN QUERY PLAN {per_issue}", (1,)))
    assert "failures_cluster" in plan, plan


def test_stop_between_batches(feed: Feed) -> None:
    from retrospec.jobs.context import Stopped

    for _ in range(4):
        feed.send(sid(), error())
    ctx = feed.context(batch_size=2)
    seen: list[int] = []

    def stop_after_first(ids: list[int]) -> None:
        seen.append(len(ids))
        ctx.stop.set()

    ctx.options["midway"] = stop_after_first
    with pytest.raises(Stopped):
        clustering.run(ctx)
    assert feed.value("SELECT failure_count FROM clusters") == 2


def test_migration_3_moves_frames_out_of_clusters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrospec.storage import migrations

    settings = make_settings(tmp_path / "old")
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
        prepare_database(settings.database)  # migrates to 2 only
    # Written as a site was then (today's create_site needs today's columns).
    conn = connect(settings.database)
    conn.execute("INSERT INTO sites (id, name, origins, created_at) VALUES ('s1', 'shop', '[]', 1)")
    feed = Feed(settings=settings, conn=conn, site=Site("s1", "shop", (), None, None, 1))
    try:
        frames = '[{"function": "lineTotal", "in_app": true}]'
        feed.conn.execute(
            "INSERT INTO clusters (site_id, fingerprint, kind, basis, title, frames, "
            "first_seen_at, last_seen_at, updated_at) VALUES (?, 'f', 'error', 'stack', 't', ?, "
            "1, 1, 1)",
            (feed.site.id, frames),
        )
        assert prepare_database(settings.database) == [v for v, _, _ in migrations.MIGRATIONS[2:]]
        assert feed.rows("SELECT cluster_id, frames FROM cluster_frames") == [(1, frames)]
        assert feed.value("SELECT frames FROM clusters") is None
        # Migration 9 gave the existing site a DSN.
        assert feed.rows("SELECT project_id, length(dsn_key) FROM sites") == [(1, 32)]
    finally:
        feed.conn.close()


# --- pace: exact counts through batching, sampling, crashes and reruns (issue 19) -------------


def flood(feed: Feed) -> None:
    """A hot bug repeated across sessions, users, releases and two days, plus a few others."""
    t0 = 1_732_600_000_000
    day = 86_400_000
    for n in range(24):
        session = f"flood-{n % 9:03d}"  # sessions repeat: several failures each
        user = None if n % 5 == 0 else f"user-{n % 4}"
        ua = FIREFOX_UA if n % 3 == 0 else CHROME_UA
        release = "1.4.2" if n < 12 else "1.5.0"
        at = t0 + (day if n >= 16 else 0) + n
        failures = [error(CHROME_V1), error(CHROME_V2)]  # one bug, two deploys
        if n % 4 == 0:
            failures.append(error(COUPON_CHROME, COUPON_MSG))
        if n % 6 == 0:
            failures.append(network(f"https://shop.example.com/api/orders/{n}", 500))
        feed.send(session, *failures, user=user, ua=ua, release=release, received_at=at)


def assert_counts_exact(feed: Feed) -> None:
    """Every counter the job keeps equals what the failures table itself says."""
    assert feed.value("SELECT count(*) FROM failures WHERE cluster_id IS NULL") == 0
    truth = feed.rows(
        "SELECT cluster_id, count(*), count(DISTINCT session_id), count(DISTINCT user_key), "
        "min(received_at), max(received_at) FROM failures GROUP BY cluster_id ORDER BY 1"
    )
    kept = feed.rows(
        "SELECT id, failure_count, session_count, user_count, first_seen_at, last_seen_at "
        "FROM clusters WHERE failure_count > 0 ORDER BY id"
    )
    assert kept == truth
    per_session = feed.rows(
        "SELECT cluster_id, session_id, count(*), max(received_at) FROM failures "
        "GROUP BY cluster_id, session_id ORDER BY 1, 2"
    )
    assert feed.rows(
        "SELECT cluster_id, session_id, failures, last_seen_at FROM cluster_sessions ORDER BY 1, 2"
    ) == [tuple(r) for r in per_session]
    users = feed.rows(
        "SELECT DISTINCT cluster_id, user_key FROM failures WHERE user_key IS NOT NULL "
        "ORDER BY 1, 2"
    )
    assert feed.rows("SELECT cluster_id, user_key FROM cluster_users ORDER BY 1, 2") == users
    days: dict[tuple[int, int], int] = {}
    facets: dict[tuple[int, str, str], int] = {}
    for row in feed.conn.execute("SELECT * FROM failures"):
        cid = int(row["cluster_id"])
        key = (cid, day_of(row["received_at"]))
        days[key] = days.get(key, 0) + 1
        for name, value in clustering.facets_of(row):
            facets[(cid, name, value)] = facets.get((cid, name, value), 0) + 1
    assert feed.rows("SELECT cluster_id, day, count FROM cluster_days ORDER BY 1, 2") == sorted(
        (c, d, n) for (c, d), n in days.items()
    )
    assert feed.rows(
        "SELECT cluster_id, facet, value, count FROM cluster_facets ORDER BY 1, 2, 3"
    ) == sorted((c, f, v, n) for (c, f, v), n in facets.items())


@pytest.fixture
def flood_snapshot(tmp_path: Path) -> dict[str, Any]:
    """The state after one clean run with default batches over flood()'s data."""
    settings = make_settings(tmp_path / "clean")
    prepare_database(settings.db_path)
    feed = make_feed(settings)
    try:
        flood(feed)
        assert feed.cluster().items == 58
        assert_counts_exact(feed)
        return snapshot(feed)
    finally:
        feed.conn.close()


def test_counts_stay_exact_through_tiny_batches_and_slices(
    feed: Feed, flood_snapshot: dict[str, Any]
) -> None:
    flood(feed)
    result = feed.cluster(batch_size=2, batch_max=7, slice_failures=3, slice_keys=1)
    assert result.items == 58
    assert result.details["writes"] > result.details["batches"] > 8
    assert_counts_exact(feed)
    assert snapshot(feed) == flood_snapshot


def test_write_slices_bound_failures_and_distinct_fingerprints() -> None:
    def item(n: int, fp: str) -> clustering.Item:
        return clustering.Item(n, "s", "x", None, n, fp, "error", "stack", "t", None, None, ())

    items = [item(n, fp) for n, fp in enumerate("aaaaabcabdd")]
    parts = clustering.write_slices(items, failures=4, keys=2)
    assert ["".join(i.fingerprint for i in p) for p in parts] == ["aaaa", "ab", "ca", "bdd"]
    assert [i.id for p in parts for i in p] == list(range(len(items)))


def test_a_crash_between_write_slices_then_rerun_counts_every_failure_once(
    feed: Feed, flood_snapshot: dict[str, Any]
) -> None:
    flood(feed)
    writes: list[list[int]] = []

    def crash_in_third_write(ids: list[int]) -> None:
        writes.append(ids)
        if len(writes) == 3:
            raise Boom("killed mid-batch")

    with pytest.raises(Boom):
        feed.cluster(batch_size=100, slice_failures=10, midway=crash_in_third_write)
    # The first two slices of the one claimed batch committed; the third rolled back whole.
    done = feed.value("SELECT count(*) FROM failures WHERE cluster_id IS NOT NULL")
    assert done == len(writes[0]) + len(writes[1]) == 20
    assert feed.value("SELECT sum(failure_count) FROM clusters") == 20
    assert_counts_exact_for_claimed(feed)
    result = feed.cluster(batch_size=100, slice_failures=10)
    assert result.items == 38
    assert_counts_exact(feed)
    assert snapshot(feed) == flood_snapshot
    assert feed.cluster().items == 0  # a rerun finds nothing and changes nothing
    assert snapshot(feed) == flood_snapshot


def assert_counts_exact_for_claimed(feed: Feed) -> None:
    """Counters match the claimed failures (some are still unclaimed)."""
    truth = feed.rows(
        "SELECT cluster_id, count(*), count(DISTINCT session_id), count(DISTINCT user_key) "
        "FROM failures WHERE cluster_id IS NOT NULL GROUP BY cluster_id ORDER BY 1"
    )
    assert (
        feed.rows(
            "SELECT id, failure_count, session_count, user_count FROM clusters "
            "WHERE failure_count > 0 ORDER BY id"
        )
        == truth
    )


def test_a_hot_cluster_keeps_every_nth_payload_and_counts_every_failure(
    tmp_path: Path, flood_snapshot: dict[str, Any]
) -> None:
    settings = make_settings(tmp_path / "hot", hot_cluster_after=5, hot_cluster_keep_every=4)
    prepare_database(settings.db_path)
    feed = make_feed(settings)
    try:
        flood(feed)
        result = feed.cluster(batch_size=3, batch_max=11, slice_failures=5)
        assert result.items == 58
        assert_counts_exact(feed)
        # Counts, sessions, users, days and facets are those of an unsampled run.
        assert snapshot(feed) == flood_snapshot
        hot = feed.value("SELECT id FROM clusters ORDER BY failure_count DESC LIMIT 1")
        ids = [
            r[0]
            for r in feed.rows("SELECT id FROM failures WHERE cluster_id = ? ORDER BY id", (hot,))
        ]
        assert len(ids) == 48
        kept = {
            r[0]
            for r in feed.rows(
                "SELECT id FROM failures WHERE cluster_id = ? AND payload IS NOT NULL", (hot,)
            )
        }
        # The first 5 keep theirs; after that only the 8th, 12th, ... 48th failure.
        expected = {fid for n, fid in enumerate(ids, 1) if n <= 5 or n % 4 == 0}
        assert kept == expected and len(kept) == 5 + 11
        # Shed: 32 of the hot bug's, and the 6th of the 6 coupon failures; network failures
        # never had a payload.
        assert result.details["shed"] == 32 + 1
        assert feed.value("SELECT count(*) FROM failures WHERE payload IS NULL") == 33 + 4
        # The sample shown on the issue is a failure whose stack is still stored.
        sample = feed.value("SELECT sample_failure_id FROM clusters WHERE id = ?", (hot,))
        assert sample in kept and sample == max(kept)
    finally:
        feed.conn.close()


def test_sampling_off_keeps_every_payload() -> None:
    assert all(clustering.Sampling(0, 100).keeps(n) for n in range(1, 500))
    on = clustering.Sampling(10, 5)
    assert [n for n in range(1, 31) if on.keeps(n)] == [*range(1, 11), 15, 20, 25, 30]


def test_slices_take_few_new_issues_while_keeping_up_and_many_when_behind(feed: Feed) -> None:
    """Each new issue dirties its own index pages, so a slice of many amortises the commit on a
    backlog; fresh failures still go in slices short enough for ingest to get the writer."""
    few = clustering.KEEPING_UP_SLICE_KEYS
    assert few * 4 <= clustering.WRITE_SLICE_KEYS

    def bugs(first: int, received_at: int | None) -> None:
        # Each failure its own bug: its own function, position and property name.
        for start in range(first, first + few * 2, 10):
            failures = [
                error(
                    CHROME_V1.replace("lineTotal", f"handler{k}")
                    .replace("price", f"field{k}")
                    .replace(":2:", f":{k + 3}:"),
                    PRICE_CHROME.replace("price", f"field{k}"),
                )
                for k in range(start, start + 10)
            ]
            feed.send(sid(), *failures, received_at=received_at)

    bugs(0, None)  # 2 keeping-up slices' worth of new issues, received just now
    fresh = feed.cluster(batch_size=few * 4)
    assert fresh.items == few * 2 and fresh.details["new_clusters"] == few * 2
    assert fresh.details["writes"] == 2
    bugs(few * 2, now_ms() - 600_000)  # as many again, long enough ago to be a backlog
    behind = feed.cluster(batch_size=few * 4)
    assert behind.items == few * 2 and behind.details["new_clusters"] == few * 2
    assert behind.details["writes"] == 1
    assert_counts_exact(feed)


def test_write_slices_are_small_while_keeping_up_and_big_when_behind(feed: Feed) -> None:
    """What a slice takes is what an ingest arriving meanwhile waits; its size is also the job's
    share of the writer under a flood. Fresh failures go in small slices, a backlog in big ones."""
    small = clustering.KEEPING_UP_SLICE_FAILURES
    assert small * 4 <= clustering.WRITE_SLICE_FAILURES
    now = now_ms()
    sessions = [sid() for _ in range(9)]
    for n in range(small // 5):  # 2 slices' worth of one bug, received just now
        feed.send(sessions[n % 9], *[error(CHROME_V1)] * 10)
    fresh = feed.cluster(batch_size=small * 4)
    assert fresh.items == small * 2 and fresh.details["writes"] == 2
    for n in range(small // 5):  # as many again, received long enough ago to be a backlog
        feed.send(sessions[n % 9], *[error(CHROME_V1)] * 10, received_at=now - 600_000)
    behind = feed.cluster(batch_size=small * 4)
    assert behind.items == small * 2 and behind.details["writes"] == 1
    assert_counts_exact(feed)
