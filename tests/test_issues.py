"""Issue read API and lifecycle: list filters and sorting, daily counts, status changes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from retrospec.clock import day_of
from retrospec.errors import BadRequest, NotFound
from retrospec.issues.queries import IssueSummary, daily_counts, get_issue, list_issues
from retrospec.settings import Settings
from retrospec.storage.db import reading
from tests.support.envelopes import CHROME_V1, COUPON_CHROME, COUPON_MSG, error, network
from tests.support.feeds import Feed, make_feed, sid

T = TypeVar("T")

pytestmark = pytest.mark.backends


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    """A Feed on the test's fresh database."""
    f = make_feed(settings)
    yield f
    f.conn.close()


def read(feed: Feed, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run a read query against the feed's database, as the CLI does."""
    with reading(feed.settings.database) as conn:
        return fn(conn)


def issues(feed: Feed, **kw: Any) -> tuple[list[IssueSummary], int]:
    """list_issues with keyword filters."""
    return read(feed, lambda c: list_issues(c, **kw))


T0 = 1_732_600_000_000
DAY = 86_400_000


def three_issues_and_a_candidate(feed: Feed) -> dict[str, int]:
    """price: 3 failures/3 sessions; coupon: 2/2, newest; orders 5xx: 4/2, oldest; one candidate."""
    for n in range(3):
        feed.send(sid(), error(CHROME_V1), user=f"u{n}", received_at=T0 + DAY + n)
    for n in range(2):
        feed.send(sid(), error(COUPON_CHROME, COUPON_MSG), received_at=T0 + 2 * DAY + n)
    a, b = sid(), sid()
    for s in (a, a, a, b):
        feed.send(s, network("https://shop.example.com/api/orders/5", 502), received_at=T0)
    feed.send(sid(), error(None, "Script error.", "Error"), received_at=T0 + 3 * DAY)
    feed.cluster()
    ids = {c["title"]: int(c["id"]) for c in feed.clusters()}
    return {
        "price": next(v for k, v in ids.items() if "'price'" in k),
        "coupon": next(v for k, v in ids.items() if "'value'" in k),
        "orders": next(v for k, v in ids.items() if "orders" in k),
        "candidate": next(v for k, v in ids.items() if "Script error" in k),
    }


def test_list_defaults_to_open_issues_newest_first(feed: Feed) -> None:
    ids = three_issues_and_a_candidate(feed)
    items, total = issues(feed)
    assert total == 3
    assert [i.id for i in items] == [ids["coupon"], ids["price"], ids["orders"]]
    price = next(i for i in items if i.id == ids["price"])
    assert price == IssueSummary(
        id=ids["price"],
        site_id=feed.site.id,
        site_name="shop",
        kind="error",
        title="TypeError: Cannot read properties of undefined (reading 'price')",
        culprit="lineTotal (/static/js/main.js)",
        status="open",
        regression=False,
        failure_count=3,
        session_count=3,
        user_count=3,
        first_seen_at=T0 + DAY,
        last_seen_at=T0 + DAY + 2,
    )


def test_status_filters_including_candidates_and_all(feed: Feed) -> None:
    ids = three_issues_and_a_candidate(feed)
    feed.set_status(ids["price"], "resolve")
    feed.set_status(ids["orders"], "ignore")
    assert [i.id for i in issues(feed, status="open")[0]] == [ids["coupon"]]
    assert [i.id for i in issues(feed, status="resolved")[0]] == [ids["price"]]
    assert [i.id for i in issues(feed, status="ignored")[0]] == [ids["orders"]]
    assert [i.id for i in issues(feed, status="candidate")[0]] == [ids["candidate"]]
    everything, total = issues(feed, status="all")
    assert total == 3 and ids["candidate"] not in {i.id for i in everything}


def test_sorts(feed: Feed) -> None:
    ids = three_issues_and_a_candidate(feed)

    def order(sort: str) -> list[int]:
        return [i.id for i in issues(feed, sort=sort)[0]]

    assert order("failures") == [ids["orders"], ids["price"], ids["coupon"]]
    assert order("sessions") == [ids["price"], ids["orders"], ids["coupon"]]
    assert order("first_seen") == [ids["coupon"], ids["price"], ids["orders"]]
    with pytest.raises(BadRequest):
        issues(feed, sort="random")
    with pytest.raises(BadRequest):
        issues(feed, status="closed")


def test_kind_text_search_and_paging(feed: Feed) -> None:
    ids = three_issues_and_a_candidate(feed)
    assert [i.id for i in issues(feed, kind="network")[0]] == [ids["orders"]]
    assert [i.id for i in issues(feed, q="PRICE")[0]] == [ids["price"]]
    assert [i.id for i in issues(feed, q="lineTotal")[0]] == [ids["price"]]  # culprit
    assert issues(feed, q="100%_sure") == ([], 0)  # LIKE wildcards are literal
    page, total = issues(feed, limit=2)
    assert (len(page), total) == (2, 3)
    page, total = issues(feed, limit=2, offset=2)
    assert ([i.id for i in page], total) == ([ids["orders"]], 3)


def test_site_filter_by_name_or_id(settings: Settings, feed: Feed) -> None:
    three_issues_and_a_candidate(feed)
    other = make_feed(settings, "blog")
    try:
        other.send(sid(), error())
        other.send(sid(), error())
        other.cluster()
        assert issues(feed)[1] == 4
        assert issues(feed, site="blog")[1] == 1
        assert issues(feed, site=other.site.id)[0][0].site_name == "blog"
        assert issues(feed, site="shop")[1] == 3
        with pytest.raises(NotFound):
            issues(feed, site="nope")
    finally:
        other.conn.close()


def test_daily_counts_oldest_first_today_last(feed: Feed) -> None:
    ids = three_issues_and_a_candidate(feed)
    now = T0 + 3 * DAY
    counts = read(feed, lambda c: daily_counts(c, [ids["price"], ids["orders"], 999], now_ms=now))
    assert counts[ids["price"]] == [0, 0, 0, 0, 3, 0, 0]
    assert counts[ids["orders"]] == [0, 0, 0, 4, 0, 0, 0]
    assert counts[999] == [0] * 7
    two = read(feed, lambda c: daily_counts(c, [ids["coupon"]], days=2, now_ms=now))
    assert two == {ids["coupon"]: [2, 0]}
    assert day_of(now) - day_of(T0) == 3


def test_change_status_lifecycle_and_errors(feed: Feed) -> None:
    ids = three_issues_and_a_candidate(feed)
    cid = ids["price"]
    assert feed.set_status(cid, "ignore") == "ignored"
    assert feed.set_status(cid, "resolve") == "resolved"
    with pytest.raises(BadRequest, match="already resolved"):
        feed.set_status(cid, "resolve")
    assert feed.set_status(cid, "reopen") == "open"
    with pytest.raises(BadRequest, match="already open"):
        feed.set_status(cid, "reopen")
    with pytest.raises(BadRequest, match="candidate"):
        feed.set_status(ids["candidate"], "resolve")
    with pytest.raises(BadRequest, match="action"):
        feed.set_status(cid, "delete")
    with pytest.raises(NotFound):
        feed.set_status(424242, "resolve")
    history = feed.rows(
        "SELECT action, actor FROM issue_events WHERE cluster_id = ? ORDER BY id", (cid,)
    )
    assert history == [
        ("promoted", None),
        ("ignored", "tester"),
        ("resolved", "tester"),
        ("reopened", "tester"),
    ]
    c = next(c for c in feed.clusters() if c["id"] == cid)
    assert c["resolved_at"] is None and c["ignored_at"] is None


def test_get_issue_not_found(feed: Feed) -> None:
    with pytest.raises(NotFound):
        read(feed, lambda c: get_issue(c, 5))


def test_issue_list_uses_the_status_indexes(feed: Feed, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite query plans (EXPLAIN QUERY PLAN); PostgreSQL plans by its statistics")
    three_issues_and_a_candidate(feed)
    plans = {
        "status": "SELECT id FROM clusters c WHERE c.status = 'open' "
        "ORDER BY c.last_seen_at DESC, c.id DESC LIMIT 50",
        "site": "SELECT id FROM clusters c WHERE c.site_id = 'x' AND c.status = 'open' "
        "ORDER BY c.last_seen_at DESC, c.id DESC LIMIT 50",
    }
    for name, sql in plans.items():
        plan = " ".join(r[3] for r in feed.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        if name == "status":
            assert "clusters_search" in plan, plan
        else:
            assert "clusters_site_status_seen" in plan, plan
        assert "SCAN c" not in plan
