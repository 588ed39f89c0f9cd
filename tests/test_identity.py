"""Grouping versions: issues made under older rules keep their ids, new failures still find them,
old candidates are grouped again, and the transition ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retrospec.clock import now_ms
from retrospec.issues import identity
from retrospec.issues.fingerprint import GROUPING_VERSION
from retrospec.settings import Settings
from tests.support.envelopes import error
from tests.support.feeds import Feed, make_feed, sid


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    """A Feed on the test's fresh database."""
    f = make_feed(settings)
    yield f
    f.conn.close()


def coupon(code: str, bundle: str = "main-Q7WARMXZ.js") -> dict[str, object]:
    """An app-thrown error quoting the user's coupon code, from an esbuild bundle."""
    message = f'Coupon "{code}" is not valid or has expired'
    stack = (
        f"CouponError: {message}\n"
        f"    at applyCoupon (https://shop.example.com/assets/{bundle}:1:2301)\n"
        f"    at HTMLButtonElement.<anonymous> (https://shop.example.com/assets/{bundle}:1:880)"
    )
    return error(stack, message, "CouponError")


def issues(feed: Feed) -> list[tuple[int, str, int, int]]:
    """(id, status, failure_count, grouping_version) of every cluster, oldest first."""
    return [
        (c["id"], c["status"], c["failure_count"], c["grouping_version"]) for c in feed.clusters()
    ]


def test_new_clusters_carry_the_current_version(feed: Feed) -> None:
    feed.send(sid(), coupon("SPRING-2024"))
    feed.cluster()
    [cluster] = feed.clusters()
    assert cluster["grouping_version"] == GROUPING_VERSION == 2
    assert identity.upgraded_version(feed.conn) == GROUPING_VERSION


def test_old_issues_keep_their_ids_and_their_failures(feed: Feed) -> None:
    # Version 1 split one bug by the code in its message: two issues, each from two sessions.
    for code in ("SPRING-2024", "SPRING-2024", "FREESHIP", "FREESHIP"):
        feed.send(sid(), coupon(code))
    feed.cluster_as_version_1()
    before = issues(feed)
    assert [(s, n, v) for _id, s, n, v in before] == [("open", 2, 1), ("open", 2, 1)]
    spring, freeship = before[0][0], before[1][0]

    # After the upgrade each failure still reaches the issue it reached before (its old key)...
    feed.send(sid(), coupon("FREESHIP"))
    feed.send(sid(), coupon("SPRING-2024"))
    result = feed.cluster()
    assert result.details["grouping_version"] == GROUPING_VERSION
    assert issues(feed) == [(spring, "open", 3, 1), (freeship, "open", 3, 1)]
    # ...and a code never seen joins through the current key, now an alias of the older issue.
    feed.send(sid(), coupon("x7q-991"))
    feed.cluster()
    assert issues(feed) == [(spring, "open", 4, 1), (freeship, "open", 3, 1)]
    assert feed.value("SELECT count(*) FROM cluster_aliases") == 1


def test_upgrade_gives_old_issues_their_new_keys_so_a_new_deploy_finds_them(feed: Feed) -> None:
    # An esbuild hash with one digit kept its place in the version-1 key.
    feed.send(sid(), coupon("SPRING-2024", "main-Q7WARMXZ.js"))
    feed.send(sid(), coupon("SPRING-2024", "main-Q7WARMXZ.js"))
    feed.cluster_as_version_1()
    [(issue, status, _n, _v)] = issues(feed)
    assert status == "open"
    # Upgrade and the next deploy ship together: the old key never matches again.
    feed.send(sid(), coupon("SPRING-2024", "main-K3PLXYZA.js"))
    result = feed.cluster()
    assert result.details["upgrade_aliases"] == 1
    assert issues(feed) == [(issue, "open", 3, 1)]


def test_upgrade_groups_old_candidates_again(feed: Feed) -> None:
    # Version 1 left three one-session candidates (one per code); version 2 sees one bug.
    for code in ("SPRING-2024", "FREESHIP", "x7q-991"):
        feed.send(sid(), coupon(code))
    feed.cluster_as_version_1()
    assert [s for _id, s, _n, _v in issues(feed)] == ["candidate"] * 3
    result = feed.cluster()
    assert result.details["upgrade_released"] == 3
    [(_id, status, count, version)] = issues(feed)
    assert (status, count, version) == ("open", 3, GROUPING_VERSION)
    assert feed.value("SELECT count(*) FROM cluster_sessions") == 3


def test_a_candidate_whose_payloads_were_purged_stays(feed: Feed) -> None:
    feed.send(sid(), coupon("SPRING-2024"))
    feed.send(sid(), coupon("FREESHIP"))
    feed.cluster_as_version_1()
    feed.conn.execute("UPDATE failures SET payload = NULL WHERE message LIKE '%FREESHIP%'")
    feed.conn.commit()
    feed.cluster()
    versions = sorted((c["grouping_version"], c["failure_count"]) for c in feed.clusters())
    assert versions == [(1, 1), (GROUPING_VERSION, 1)]


def test_the_transition_ends(feed: Feed, settings: Settings) -> None:
    feed.send(sid(), coupon("SPRING-2024", "main-Q7WARMXZ.js"))
    feed.send(sid(), coupon("SPRING-2024", "main-Q7WARMXZ.js"))
    feed.cluster_as_version_1()
    feed.cluster()  # the upgrade
    assert identity.legacy_versions(feed.conn, settings.grouping_transition_days, now_ms()) == (1,)
    later = now_ms() + int((settings.grouping_transition_days + 1) * identity.DAY_MS)
    assert identity.legacy_versions(feed.conn, settings.grouping_transition_days, later) == ()
