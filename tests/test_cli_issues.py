"""`retrospec issues ...` and `retrospec sessions list`: tables, --json schemas, exit codes, pipes.

The data comes in through the real ingest endpoint (in-process) and the real cluster and replay
jobs, so these tests read exactly what a user's terminal would show.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrospec.cli import main as cli
from retrospec.errors import UsageError
from retrospec.issues.evidence import get_evidence
from retrospec.issues.reports import evidence_json
from retrospec.storage.db import reading
from tests.support.data import add_site, make_settings
from tests.support.envelopes import cart_batch
from tests.support.shop import (
    DAY_MS,
    Shop,
    age_sessions,
    ingest,
    invoke,
    make_shop,
    run_cli,
    run_jobs,
)

ANSI = re.compile(r"\x1b\[")
TITLE = "TypeError: Cannot read properties of undefined (reading 'total')"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """Read-only shop shared by the module (tests that change state build their own)."""
    return make_shop(tmp_path_factory.mktemp("shop") / "data")


# --- issues list ---------------------------------------------------------------------------


def test_issues_list_table_shows_the_issue_newest_first(shop: Shop) -> None:
    result = invoke(shop, "issues", "list")
    assert result.exit_code == 0, result.output
    # Not a terminal: a header and one tab-separated line per issue, every value whole.
    header = result.stdout.splitlines()[0].split("\t")
    assert header == [
        "id", "status", "title", "failures", "sessions", "users", "last seen", "site"
    ]  # fmt: skip
    row = dict(zip(header, result.stdout.splitlines()[1].split("\t"), strict=True))
    assert row["id"] == "1" and row["status"] == "open"
    assert row["title"] == TITLE
    assert (row["failures"], row["sessions"], row["users"]) == ("4", "4", "4")
    assert "ago" in row["last seen"] or "just now" in row["last seen"]
    assert row["site"] == "shop"


def test_issues_list_json_schema(shop: Shop) -> None:
    result = invoke(shop, "issues", "list", "--json", "--status", "all")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"schema_version", "status", "site", "total", "issues"}
    assert doc["schema_version"] == 1 and doc["status"] == "all" and doc["total"] == 1
    item = doc["issues"][0]
    assert set(item) == {
        "id",
        "site",
        "kind",
        "status",
        "regression",
        "title",
        "culprit",
        "counts",
        "first_seen",
        "last_seen",
        "url",
    }
    assert item["id"] == 1 and item["status"] == "open" and item["kind"] == "error"
    assert item["title"] == TITLE
    assert item["site"]["name"] == "shop" and item["regression"] is False
    assert item["counts"] == {"failures": 4, "sessions": 4, "users": 4}
    assert item["last_seen"].endswith("Z") and item["url"] == "http://127.0.0.1:8080/issues/1"


def test_issues_list_filters_by_status_site_and_limit(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data")
    other = make_settings(tmp_path / "data", demo=False)
    _, key = add_site(other, "blog")
    sids = [str(uuid.uuid4()) for _ in range(2)]
    ingest(other, key, (cart_batch(s, message="blog exploded") for s in sids))
    run_jobs(other, "cluster")

    def ids(*args: str) -> list[int]:
        result = invoke(shop, "issues", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [i["id"] for i in json.loads(result.stdout)["issues"]]

    assert ids() == [2, 1]  # newest first
    assert ids("--site", "blog") == [2]
    assert ids("--site", "shop") == [1]
    assert ids("--limit", "1") == [2]
    assert ids("--status", "resolved") == []
    assert ids("--status", "candidate") == []
    table = invoke(shop, "issues", "list", "--limit", "1")
    assert "1 of 2 open issues; use --limit to see more" in table.stdout
    both = invoke(shop, "issues", "list").stdout
    assert both.splitlines()[0].split("\t")[-1] == "site" and "\tblog" in both
    empty = invoke(shop, "issues", "list", "--status", "ignored")
    assert empty.exit_code == 0 and "no ignored issues" in empty.stdout


def test_issues_list_usage_errors_exit_2(shop: Shop) -> None:
    assert invoke(shop, "issues", "list", "--status", "bogus").exit_code == 2
    assert invoke(shop, "issues", "list", "--limit", "0").exit_code == 2
    assert invoke(shop, "issues", "list", "--nope").exit_code == 2


@pytest.mark.slow
def test_piped_output_has_no_colour_and_keeps_values_whole(shop: Shop) -> None:
    for args in (
        ["issues", "list"],
        ["issues", "list", "--status", "all"],
        ["sessions", "list"],
        ["jobs", "list"],
    ):
        proc = run_cli(shop.env, *args)
        assert proc.returncode == 0, proc.stderr
        assert not ANSI.search(proc.stdout), args
        rows = [line.split("\t") for line in proc.stdout.splitlines()]
        assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows), args
        assert not [c for r in rows for c in r if c.endswith("…")], args  # nothing cut
    shown = run_cli(shop.env, "issues", "show", "1")
    assert shown.returncode == 0 and not ANSI.search(shown.stdout)
    assert TITLE in shown.stdout


# --- issues show ---------------------------------------------------------------------------


def test_issues_show_prints_the_evidence_and_the_replay_link(shop: Shop) -> None:
    result = invoke(shop, "issues", "show", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Issue 1: {TITLE}" in out
    assert "4 failures in 4 sessions by 4 users" in out
    link = re.search(r"http://127\.0\.0\.1:8080/sessions/([\w-]+)\?t=(\d+)", out)
    assert link and link.group(1) in shop.sessions
    assert int(link.group(2)) > 0  # the failure's offset into the replay
    assert 'clicked button "Pay now"' in out
    assert "at checkout" in out  # the raw stack
    assert "Chrome" in out and "http://127.0.0.1:8080/issues/1" in out


def test_issues_show_json_is_the_evidence_schema(shop: Shop) -> None:

    result = invoke(shop, "issues", "show", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)

    with reading(shop.settings.db_path) as conn:
        expected = evidence_json(get_evidence(conn, 1), "http://127.0.0.1:8080")
    assert doc == json.loads(json.dumps(expected))
    assert doc["schema_version"] == 1 and doc["id"] == 1
    rep = doc["representative"]
    assert rep["expired"] is False and rep["replay_status"] == "ready"
    assert rep["replay_url"] == (
        f"http://127.0.0.1:8080/sessions/{rep['session_id']}?t={rep['offset_ms']}"
    )
    assert doc["stack"].startswith("TypeError: x")


def test_issues_show_markdown_is_the_bug_report(shop: Shop) -> None:
    result = invoke(shop, "issues", "show", "1", "--markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## TypeError: Cannot read properties")
    assert "[Watch the replay at the failure](http://127.0.0.1:8080/sessions/" in result.stdout
    assert "### Stack" in result.stdout


def test_issues_show_errors(shop: Shop) -> None:
    both = invoke(shop, "issues", "show", "1", "--json", "--markdown")
    assert isinstance(both.exception, UsageError)  # exit 2 through cli.main (see entry point)
    assert "choose one of --json and --markdown" in str(both.exception)
    missing = invoke(shop, "issues", "show", "999")
    assert missing.exit_code == 1 and "no issue 999" in str(missing.exception)
    assert invoke(shop, "issues", "show", "abc").exit_code == 2


def test_public_url_is_used_for_links(shop: Shop) -> None:
    env = {**shop.env, "RETROSPEC_PUBLIC_URL": "https://rs.example.com/"}
    result = CliRunner().invoke(cli.app, ["issues", "show", "1"], env=env)
    assert "https://rs.example.com/sessions/" in result.stdout


def test_expired_replay_is_reported_as_expired_not_an_error(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=2)
    age_sessions(shop.settings.database, shop.sessions, 8 * DAY_MS)
    purged = invoke(shop, "purge")
    assert purged.exit_code == 0, purged.output
    result = invoke(shop, "issues", "show", "1")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "replay expired — session" in out and "older than the retention period" in out
    assert "/sessions/" not in out  # no dead replay link
    assert "raw stack purged" in out  # payload gone, normalised frames remain
    doc = json.loads(invoke(shop, "issues", "show", "1", "--json").stdout)
    assert doc["representative"]["expired"] is True
    assert doc["representative"]["replay_url"] is None
    assert doc["stack"] is None and doc["frames"]
    assert doc["counts"] == {"failures": 2, "sessions": 2, "users": 2}
    md = invoke(shop, "issues", "show", "1", "--markdown").stdout
    assert "No playable replay (expired)" in md


# --- resolve / ignore / reopen ----------------------------------------------------------------


def test_resolve_ignore_reopen_change_the_status(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=2)

    def status() -> str:
        doc = json.loads(invoke(shop, "issues", "show", "1", "--json").stdout)
        return str(doc["status"])

    result = invoke(shop, "issues", "resolve", "1")
    assert result.exit_code == 0 and "issue 1 is now resolved" in result.stdout
    assert status() == "resolved"
    again = invoke(shop, "issues", "resolve", "1")
    assert again.exit_code == 1 and "already resolved" in str(again.exception)
    assert invoke(shop, "issues", "ignore", "1").exit_code == 0
    assert status() == "ignored"
    assert invoke(shop, "issues", "reopen", "1").exit_code == 0
    assert status() == "open"
    history = json.loads(invoke(shop, "issues", "show", "1", "--json").stdout)["history"]
    assert [h["action"] for h in history][-3:] == ["resolved", "ignored", "reopened"]
    assert history[-1]["actor"].startswith("cli")
    missing = invoke(shop, "issues", "reopen", "42")
    assert missing.exit_code == 1 and "no issue 42" in str(missing.exception)


# --- sessions list -------------------------------------------------------------------------


def test_sessions_list_table_and_json(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=2)
    quiet = str(uuid.uuid4())
    ingest(shop.settings, shop.key, [cart_batch(quiet, failure=False, user="calm")])
    run_jobs(shop.settings, "replays")

    table = invoke(shop, "sessions", "list")
    assert table.exit_code == 0, table.output
    assert "calm@example.com" in table.stdout and "ready" in table.stdout

    doc = json.loads(invoke(shop, "sessions", "list", "--json").stdout)
    assert set(doc) == {"schema_version", "site", "with_failures", "total", "sessions"}
    assert doc["total"] == 3 and doc["sessions"][0]["id"] == quiet  # newest first
    item = doc["sessions"][0]
    assert set(item) == {
        "id",
        "site",
        "started_at",
        "last_seen",
        "user",
        "user_key",
        "browser",
        "os",
        "entry_url",
        "last_url",
        "release",
        "environment",
        "failures",
        "replay",
    }
    assert set(item["replay"]) == {
        "status",
        "reason",
        "expired",
        "duration_ms",
        "active_ms",
        "pages",
        "clicks",
        "rage_clicks",
        "url",
    }
    assert item["user"]["email"] == "calm@example.com" and item["failures"] == 0
    assert item["replay"]["status"] == "ready" and item["replay"]["expired"] is False
    assert item["replay"]["url"] == f"http://127.0.0.1:8080/sessions/{quiet}"

    failing = json.loads(invoke(shop, "sessions", "list", "--json", "--with-failures").stdout)
    assert failing["total"] == 2 and quiet not in {s["id"] for s in failing["sessions"]}
    assert (
        json.loads(invoke(shop, "sessions", "list", "--json", "--site", "shop").stdout)["total"]
        == 3
    )
    limited = invoke(shop, "sessions", "list", "--limit", "1")
    assert "1 of 3 sessions; use --limit to see more" in limited.stdout
    nosite = invoke(shop, "sessions", "list", "--site", "nope")
    assert nosite.exit_code == 1 and "no site" in str(nosite.exception)


# --- the real entry point: exit codes and one-line errors on stderr ---------------------------


@pytest.mark.slow
def test_entry_point_exit_codes_and_one_line_errors(shop: Shop, tmp_path: Path) -> None:
    ok = run_cli(shop.env, "issues", "list", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["total"] == 1

    missing = run_cli(shop.env, "issues", "show", "999")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().count("\n") == 0 and "no issue 999" in missing.stderr

    both = run_cli(shop.env, "issues", "show", "1", "--json", "--markdown")
    assert both.returncode == 2 and "choose one of --json and --markdown" in both.stderr

    bad_status = run_cli(shop.env, "issues", "list", "--status", "bogus")
    assert bad_status.returncode == 2, bad_status.stderr
    assert "Traceback" not in bad_status.stderr

    nodb = run_cli({"RETROSPEC_DATA_DIR": str(tmp_path / "nowhere")}, "issues", "list")
    assert nodb.returncode == 1 and "no RetroSpec database" in nodb.stderr
    assert not (tmp_path / "nowhere").exists()  # a typo does not create a data dir
