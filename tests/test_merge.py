"""Merge and unmerge through the CLI: failures, exact distinct counts, future failures, history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from retrospec.cli import main as cli
from retrospec.issues.evidence import get_evidence
from retrospec.issues.queries import list_issues
from retrospec.settings import Settings
from tests.support.envelopes import error, network
from tests.support.feeds import Feed, make_feed, sid
from tests.support.shop import run_cli

STACK = """TypeError: Cannot read properties of undefined (reading '{prop}')
    at {fn} (https://shop.example.com/assets/main-YGIWARMX.js:1:2301)"""


def bug(prop: str, fn: str = "renderSummary") -> dict[str, Any]:
    """One of two bugs the rules rightly keep apart (different properties, read at different
    places of one function)."""
    msg = f"Cannot read properties of undefined (reading '{prop}')"
    column = {"name": 2301, "city": 2377}.get(prop, 90)
    stack = STACK.format(prop=prop, fn=fn).replace(":1:2301", f":1:{column}")
    return error(stack, msg)


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    """A Feed with two issues and a candidate: 1 ('name', 2 sessions, users a and b), 2
    ('city', sessions shared with issue 1 and user b again), 3 (a network candidate)."""
    f = make_feed(settings)
    s1, s2, s3 = sid(), sid(), sid()
    f.send(s1, bug("name"), user="a")
    f.send(s2, bug("name"), bug("city"), user="b")
    f.send(s3, bug("city"), bug("city"), user="b")
    f.send(sid(), network("https://shop.example.com/api/cart", 503))
    f.cluster()
    yield f
    f.conn.close()


def run(feed: Feed, *args: str) -> Result:
    env = {"RETROSPEC_DATA_DIR": str(feed.settings.data_path), "RETROSPEC_DEMO": "false"}
    return CliRunner().invoke(cli.app, list(args), env=env)


def counts(feed: Feed, cid: int) -> tuple[str, int, int, int]:
    row = feed.conn.execute(
        "SELECT status, failure_count, session_count, user_count FROM clusters WHERE id = ?",
        (cid,),
    ).fetchone()
    return str(row[0]), int(row[1]), int(row[2]), int(row[3])


def test_the_fixture_has_two_issues_and_a_candidate(feed: Feed) -> None:
    assert counts(feed, 1) == ("open", 2, 2, 2)
    assert counts(feed, 2) == ("open", 3, 2, 1)
    assert counts(feed, 3) == ("candidate", 1, 1, 1)  # an anonymous visitor is a user too


def test_merge_combines_counts_with_exact_distinct_sessions_and_users(feed: Feed) -> None:
    result = run(feed, "issues", "merge", "1", "2", "3", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == {
        "schema_version": 1,
        "action": "merge",
        "target": 1,
        "sources": [2, 3],
        "failures_moved": 4,
    }
    # 6 failures; sessions s1, s2, s3 and the network one (s2 was in both issues); users a, b
    # and the network session's anonymous visitor.
    assert counts(feed, 1) == ("open", 6, 4, 3)
    assert counts(feed, 2)[0] == counts(feed, 3)[0] == "merged"
    assert feed.value("SELECT count(*) FROM failures WHERE cluster_id <> 1") == 0
    assert feed.value("SELECT sum(count) FROM cluster_days WHERE cluster_id = 1") == 6
    facet = "SELECT count FROM cluster_facets WHERE cluster_id = 1 AND facet = 'url'"
    assert feed.value(facet) == 6
    items, total = list_issues(feed.conn, status="all")
    assert [i.id for i in items] == [1] and total == 1
    assert list_issues(feed.conn, status="candidate")[1] == 0

    shown = json.loads(run(feed, "issues", "show", "1", "--json").stdout)
    assert shown["merged"] == [
        {"id": 2, "title": "TypeError: Cannot read properties of undefined (reading 'city')"},
        {"id": 3, "title": "GET shop.example.com/api/cart → 5xx"},
    ]
    assert [(h["action"], h["detail"]) for h in shown["history"]][-2:] == [
        ("merged", "2"),
        ("merged", "3"),
    ]
    source = json.loads(run(feed, "issues", "show", "2", "--json").stdout)
    assert source["status"] == "merged" and source["merged_into"] == 1
    assert source["history"][-1]["action"] == "merged_into"
    assert source["history"][-1]["actor"].startswith("cli")


def test_failures_of_a_merged_issue_follow_the_target(feed: Feed) -> None:
    assert run(feed, "issues", "merge", "1", "2").exit_code == 0
    feed.send(sid(), bug("city"), user="c")
    feed.cluster()
    assert counts(feed, 1) == ("open", 6, 4, 3)  # users a, b, c
    assert counts(feed, 2)[1] == 3  # the source's own counters stay as they were
    assert len(feed.clusters()) == 3


def test_unmerge_gives_back_the_failures_that_arrived_since(feed: Feed) -> None:
    assert run(feed, "issues", "merge", "1", "2", "3").exit_code == 0
    feed.send(sid(), bug("city"), user="c")
    feed.cluster()
    result = run(feed, "issues", "unmerge", "1", "2")
    assert result.exit_code == 0, result.output
    assert "unmerged 2 from issue 1 (4 failures moved back)" in result.stdout
    assert counts(feed, 2) == ("open", 4, 3, 2)
    assert counts(feed, 1) == ("open", 3, 3, 3)  # 'name' x2 and the network failure
    assert counts(feed, 3)[0] == "merged"
    assert run(feed, "issues", "unmerge", "1", "3").exit_code == 0
    assert counts(feed, 3) == ("candidate", 1, 1, 1)
    assert counts(feed, 1) == ("open", 2, 2, 2)
    ev = get_evidence(feed.conn, 2)
    assert [h.action for h in ev.history][-2:] == ["merged_into", "unmerged_from"]
    # Unmerged, its failures are its own again.
    feed.send(sid(), bug("city"), user="d")
    feed.cluster()
    assert counts(feed, 2)[1] == 5


def test_a_merge_into_a_merged_issue_is_refused_and_chains_flatten(feed: Feed) -> None:
    assert run(feed, "issues", "merge", "2", "3").exit_code == 0
    refused = run(feed, "issues", "merge", "3", "1")
    assert refused.exit_code == 1
    assert "issue 3 is merged into issue 2; merge into that" in str(refused.exception)
    assert run(feed, "issues", "merge", "1", "2").exit_code == 0
    assert feed.value("SELECT merged_into FROM clusters WHERE id = 3") == 1  # one level deep
    assert counts(feed, 1)[1] == 6


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("1", "1"), 1, "cannot be merged into itself"),
        (("1", "99"), 1, "no issue 99"),
        (("99", "1"), 1, "no issue 99"),
        (("1",), 2, "Missing argument"),
        (("1", "x"), 2, "Invalid value for 'sources'"),
    ],
)
def test_bad_merges_fail_with_one_line_and_change_nothing(
    feed: Feed, args: tuple[str, ...], code: int, message: str
) -> None:
    before = feed.rows("SELECT id, status, failure_count FROM clusters ORDER BY id")
    env = {"RETROSPEC_DATA_DIR": str(feed.settings.data_path), "RETROSPEC_DEMO": "false"}
    proc = run_cli(env, "issues", "merge", *args)  # the real entry point
    assert proc.returncode == code
    assert message in proc.stderr and "Traceback" not in proc.stderr
    if code == 1:
        assert proc.stderr.strip().count("\n") == 0
    assert feed.rows("SELECT id, status, failure_count FROM clusters ORDER BY id") == before


def test_unmerge_of_an_issue_not_merged_there_is_refused(feed: Feed) -> None:
    assert run(feed, "issues", "merge", "1", "3").exit_code == 0
    result = run(feed, "issues", "unmerge", "2", "3")
    assert result.exit_code == 1 and "issue 3 is not merged into issue 2" in str(result.exception)
    assert counts(feed, 3)[0] == "merged"


def test_issues_of_two_sites_cannot_be_merged(feed: Feed, settings: Settings) -> None:
    other = make_feed(settings, "blog")
    try:
        other.send(sid(), bug("title", "renderPost"))
        other.cluster()
    finally:
        other.conn.close()
    result = run(feed, "issues", "merge", "1", "4")
    assert result.exit_code == 1 and "belongs to another site" in str(result.exception)
