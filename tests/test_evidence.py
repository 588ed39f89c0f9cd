"""Issue evidence: representative replay, steps before the failure, confidence, reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from retrospec.errors import NotFound
from retrospec.issues.evidence import Evidence, LastStepAgreement, confidence_for, get_evidence
from retrospec.issues.queries import change_status
from retrospec.issues.reports import evidence_json, evidence_markdown, replay_url
from retrospec.replay import artifact
from retrospec.settings import Settings
from retrospec.storage.db import DirectWriter, reading
from tests.support.browser import query, sdk_page, wait_for
from tests.support.data import add_site
from tests.support.envelopes import CHROME_UA, CHROME_V1, FIREFOX_UA, error
from tests.support.feeds import Feed, make_feed
from tests.support.servers import ServerProcess, StaticSite

T = 1_732_560_000_000  # replay start of every session below (browser clock)
BASE = "https://rs.example.org/"


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    """A Feed on the test's fresh database."""
    f = make_feed(settings)
    yield f
    f.conn.close()


def evidence(feed: Feed, issue_id: int) -> Evidence:
    """get_evidence on a read-only connection."""
    with reading(feed.settings.db_path) as conn:
        return get_evidence(conn, issue_id)


def replay(
    feed: Feed,
    session: str,
    status: str = "ready",
    end: int = T + 60_000,
    expired: bool = False,
) -> None:
    """Give a session the replay summary the replay job would write."""
    feed.conn.execute(
        "UPDATE sessions SET replay_status = ?, replay_start_ts = ?, replay_end_ts = ?, "
        "expired_at = ? WHERE id = ?",
        ("expired" if expired else status, T, end, T if expired else None, session),
    )


def markers(feed: Feed, session: str, *rows: tuple[int, str, str | None]) -> None:
    """Insert replay markers (offset from replay start, kind, label) as the replay job would."""
    feed.conn.executemany(
        "INSERT INTO replay_markers (session_id, ts, offset_ms, kind, label) "
        "VALUES (?, ?, ?, ?, ?)",
        [(session, T + off, off, kind, label) for off, kind, label in rows],
    )


PAY = 'button "Pay now"'


def five_sessions(feed: Feed) -> int:
    """The price bug in five sessions with different replays; returns the issue id.

    A: playable, failure 20 s in, full trail of steps   (the expected representative)
    B: playable, failure 5 s in                          (less context)
    C: expired, failure 50 s in                          (most context, but not playable)
    D: playable, but the failure is after the replay end (replay not extended yet)
    E: no replay at all, no markers
    """
    sessions = {"A": 20_000, "B": 5_000, "C": 50_000, "D": 70_000, "E": 1_000}
    users = {"A": "ada", "B": "bob", "C": "cy", "D": "ada", "E": None}
    for name, off in sessions.items():
        ua = FIREFOX_UA if name == "B" else CHROME_UA
        feed.send(f"session-{name}", error(CHROME_V1, ts=T + off), user=users[name], ua=ua)
    feed.send("session-A", error(CHROME_V1, ts=T + 40_000), user="ada")  # a repeat in A
    feed.cluster()
    replay(feed, "session-A")
    replay(feed, "session-B")
    replay(feed, "session-C", expired=True)
    replay(feed, "session-D")
    markers(
        feed,
        "session-A",
        (1_000, "navigation", "https://shop.example.com/cart"),
        (5_000, "input", "input #coupon"),
        (6_000, "input", "input #coupon"),
        (7_000, "input", "input #coupon"),
        (19_600, "click", PAY),
        (20_000, "failure", "TypeError: Cannot read properties of undefined"),
        (25_000, "click", 'button "Retry"'),
    )
    markers(
        feed,
        "session-B",
        (800, "navigation", "https://shop.example.com/cart"),
        (4_900, "click", PAY),
    )
    markers(feed, "session-C", (49_000, "rage_click", PAY))
    markers(feed, "session-D", (30_000, "click", 'button "Apply coupon"'))
    [cluster] = feed.clusters()
    return int(cluster["id"])


def test_representative_is_the_playable_replay_with_most_context(feed: Feed) -> None:
    ev = evidence(feed, five_sessions(feed))
    rep = ev.representative
    assert rep is not None
    assert rep.session_id == "session-A"
    assert (rep.offset_ms, rep.context_ms, rep.ts) == (20_000, 20_000, T + 20_000)
    assert rep.replay_status == "ready" and rep.expired is False
    first_in_a = feed.value(
        "SELECT min(id) FROM failures WHERE session_id = 'session-A'",
    )
    assert rep.failure_id == first_in_a
    assert replay_url(ev, BASE) == "https://rs.example.org/sessions/session-A?t=20000"


def test_representative_is_the_cheapest_replay_that_shows_enough_context(feed: Feed) -> None:
    """Enough context (>= 20 s before the failure) first, then the fewest bytes to open there."""
    minute = 60_000

    def index(*segments: tuple[int, int, int, bool]) -> str:
        # (start offset, end offset, stored bytes, checkpoint), laid out back to back.
        out, at = [], 0
        for start, end, size, checkpoint in segments:
            out.append(artifact.Segment(T + start, T + end, at, size, 100, checkpoint))
            at += size
        return artifact.dump_index(out)

    sessions = {
        # long and unsegmented: the whole 6 MB before the first frame
        "long-old": (50 * minute, 6_000_000, None),
        # long, checkpoints every 2 minutes: the failure's checkpoint and segment, 40 kB
        "long-checkpoints": (
            50 * minute,
            6_000_000,
            index(
                (0, 48 * minute, 5_900_000, True),
                (48 * minute, 49 * minute, 25_000, True),
                (49 * minute, 51 * minute, 15_000, False),
                (51 * minute, 60 * minute, 60_000, False),
            ),
        ),
        # short: the whole 90 kB replay
        "short-one": (30_000, 90_000, None),
        # cheapest of all, but only 5 s before the failure
        "tiny-one": (5_000, 8_000, None),
    }
    for name, (offset, _size, _index) in sessions.items():
        feed.send(name, error(CHROME_V1, ts=T + offset))
    feed.cluster()
    for name, (offset, size, segs) in sessions.items():
        replay(feed, name, end=T + offset + 10 * minute)
        feed.conn.execute(
            "UPDATE sessions SET replay_bytes = ?, replay_segments = ? WHERE id = ?",
            (size, segs, name),
        )
    [cluster] = feed.clusters()
    rep = evidence(feed, int(cluster["id"])).representative
    assert rep is not None and rep.session_id == "long-checkpoints"
    assert rep.context_ms == 50 * minute
    assert (
        artifact.open_cost(artifact.parse_index(sessions["long-checkpoints"][2]), 0, rep.ts)
        == 40_000
    )

    # Without its index it costs its whole artifact: the short replay is cheapest then.
    feed.conn.execute("UPDATE sessions SET replay_segments = NULL WHERE id = 'long-checkpoints'")
    rep = evidence(feed, int(cluster["id"])).representative
    assert rep is not None and rep.session_id == "short-one" and rep.context_ms == 30_000

    # With no replay of 20 s context left, the most context wins among the rest.
    feed.conn.execute(
        "UPDATE sessions SET replay_status = 'expired', expired_at = ? "
        "WHERE id IN ('long-checkpoints', 'long-old', 'short-one')",
        (T,),
    )
    rep = evidence(feed, int(cluster["id"])).representative
    assert rep is not None and rep.session_id == "tiny-one" and rep.context_ms == 5_000


def test_steps_before_the_failure(feed: Feed) -> None:
    ev = evidence(feed, five_sessions(feed))
    steps = [(s.kind, s.label, s.offset_ms, s.seconds_before) for s in ev.steps]
    assert steps == [
        ("navigation", "https://shop.example.com/cart", 1_000, 19.0),
        ("input", "input #coupon", 7_000, 13.0),  # three keystrokes, one step
        ("click", PAY, 19_600, 0.4),
    ]


def test_a_burst_of_clicks_on_one_button_is_one_rage_click_step(feed: Feed) -> None:
    feed.send("session-r", error(ts=T + 10_000))
    feed.send("session-s", error(ts=T + 10_000))
    feed.cluster()
    replay(feed, "session-r")
    markers(
        feed,
        "session-r",
        (2_000, "click", 'link "Cart"'),
        (9_000, "click", PAY),
        (9_000, "rage_click", PAY),  # the replay job marks a burst at its first click
        (9_300, "click", PAY),
        (9_600, "click", PAY),
    )
    [c] = feed.clusters()
    ev = evidence(feed, int(c["id"]))
    assert [(s.kind, s.label, s.seconds_before) for s in ev.steps] == [
        ("click", 'link "Cart"', 8.0),
        ("rage_click", PAY, 0.4),
    ]


def test_last_step_agreement_and_confidence(feed: Feed) -> None:
    ev = evidence(feed, five_sessions(feed))
    # A, B and C (a rage click on the same button) end with "Pay now"; D clicked something else;
    # E has no markers and is not considered.
    assert ev.last_step_agreement == LastStepAgreement(PAY, 3, 4)
    assert (ev.issue.session_count, ev.issue.user_count) == (5, 4)
    assert ev.confidence.label == "high"
    assert any("3 of 4" in r for r in ev.confidence.reasons)


def test_counts_top_sessions_history_daily(feed: Feed) -> None:
    cid = five_sessions(feed)
    feed.set_status(cid, "resolve")
    ev = evidence(feed, cid)
    assert ev.issue.failure_count == 6 and ev.issue.status == "resolved"
    assert ev.top["browser"] == [("Chrome 126", 5), ("Firefox 131", 1)]
    assert ev.top["url"] == [("/cart", 6)]
    assert ev.message == "Cannot read properties of undefined (reading 'price')"
    assert ev.stack == CHROME_V1
    assert ev.frames[0]["function"] == "lineTotal"
    by_id = {s.session_id: s for s in ev.sessions}
    assert set(by_id) == {f"session-{n}" for n in "ABCDE"}
    a = by_id["session-A"]
    assert (a.failures, a.offset_ms, a.user, a.replay_status, a.expired) == (
        2,
        20_000,
        "ada",
        "ready",
        False,
    )
    assert by_id["session-C"].expired and by_id["session-E"].replay_status == "none"
    assert by_id["session-E"].offset_ms is None
    assert [h.action for h in ev.history] == ["promoted", "resolved"]
    assert ev.history[1].actor == "tester"
    assert len(ev.daily) == 14 and ev.daily[-1] == 6


def test_fallback_when_no_replay_contains_the_failure(feed: Feed) -> None:
    feed.send("session-old", error(ts=T + 3_000), user="ada")
    feed.send("session-new", error(ts=T + 9_000), user="bob")
    feed.cluster()
    replay(feed, "session-old", expired=True)
    replay(feed, "session-new", end=T + 5_000)  # ready, but the failure is after its end
    [c] = feed.clusters()
    ev = evidence(feed, int(c["id"]))
    rep = ev.representative
    assert rep is not None and rep.session_id == "session-new"
    assert (rep.context_ms, rep.offset_ms) == (0, 9_000)
    assert ev.steps == [] and ev.last_step_agreement is None
    assert ev.confidence.label == "medium"  # two sessions, two users, nothing to compare
    # Only expired replays left: still a representative, but no replay link.
    replay(feed, "session-new", expired=True)
    ev = evidence(feed, int(c["id"]))
    assert ev.representative is not None and ev.representative.expired
    assert replay_url(ev, BASE) is None


def test_candidate_with_one_session_is_low_confidence(feed: Feed) -> None:
    feed.send("session-only", error(), user="ada")
    feed.cluster()
    [c] = feed.clusters()
    ev = evidence(feed, int(c["id"]))
    assert ev.issue.status == "candidate"
    assert ev.confidence.label == "low"


def test_confidence_rule() -> None:
    def label(sessions: int, users: int, agree: tuple[int, int] | None) -> str:
        agreement = None if agree is None else LastStepAgreement("x", *agree)
        return confidence_for(sessions, users, agreement).label

    assert label(1, 1, None) == "low"
    assert label(5, 1, None) == "low"  # one user, nothing shared
    assert label(5, 1, (1, 4)) == "low"
    assert label(2, 2, None) == "medium"
    assert label(2, 1, (2, 2)) == "medium"  # one user, but the same steps twice
    assert label(9, 1, (9, 9)) == "medium"  # never high with a single user
    assert label(3, 2, (1, 3)) == "medium"
    assert label(3, 2, (2, 4)) == "high"  # exactly half agree
    assert label(3, 2, (2, 5)) == "medium"
    assert label(3, 3, (3, 3)) == "high"


def test_markdown_report(feed: Feed) -> None:
    ev = evidence(feed, five_sessions(feed))
    md = evidence_markdown(ev, BASE)
    assert md.startswith("## TypeError: Cannot read properties of undefined (reading 'price')")
    assert "- **Status:** open" in md
    assert "6 failures in 5 sessions by 4 users" in md
    assert "- **Culprit:** `lineTotal (/static/js/main.js)`" in md
    assert "- **Confidence:** high" in md
    assert '3. Clicked `button "Pay now"` (0.4 s before)' in md
    assert "3 of 4 affected sessions with a replay share the last step" in md
    assert "(https://rs.example.org/sessions/session-A?t=20000)" in md
    assert f"```\n{CHROME_V1}\n```" in md
    assert "- **Browsers:** `Chrome 126` (5), `Firefox 131` (1)" in md
    assert md.rstrip().endswith(f"(https://rs.example.org/issues/{ev.issue.id})")


def test_markdown_keeps_client_text_inert(feed: Feed) -> None:
    feed.send("session-x", error(ts=T + 2_000))
    feed.send("session-y", error(ts=T + 2_000))
    feed.cluster()
    replay(feed, "session-x")
    markers(feed, "session-x", (1_000, "click", 'button "`rm -rf` <img src=x onerror=alert(1)>"'))
    feed.conn.execute("UPDATE failures SET payload = NULL")  # purged: frames stand in
    [c] = feed.clusters()
    ev = evidence(feed, int(c["id"]))
    assert ev.stack is None
    md = evidence_markdown(ev, BASE)
    assert '1. Clicked `` button "`rm -rf` <img src=x onerror=alert(1)>" `` (1 s before)' in md
    assert "Raw stack purged; normalised frames:" in md
    assert "at lineTotal (https://shop.example.com/static/js/main.3f9a1c2b.js:2:104455)" in md


def test_json_schema_is_stable(feed: Feed) -> None:
    ev = evidence(feed, five_sessions(feed))
    doc = evidence_json(ev, BASE)
    json.dumps(doc)  # plain JSON types only
    assert set(doc) == {
        "schema_version", "id", "site", "kind", "status", "regression", "title", "message",
        "culprit", "counts", "first_seen", "last_seen", "stack", "frames", "top",
        "representative", "steps", "last_step_agreement", "confidence", "sessions", "history",
        "daily", "releases", "merged_into", "merged", "grouping_version", "clip",
    }  # fmt: skip
    assert (doc["merged_into"], doc["merged"], doc["grouping_version"]) == (None, [], 2)
    assert doc["clip"] is None  # until the clips job has tried the issue
    assert set(doc["releases"]) == {
        "first", "last", "resolved_in", "sample", "sample_has_source_maps",
    }  # fmt: skip
    frame_keys = {
        "function", "path", "raw_file", "line", "column", "in_app", "mapped", "context_line",
        "pre_context", "post_context",
    }  # fmt: skip
    assert doc["frames"] and all(set(f) == frame_keys for f in doc["frames"])
    assert doc["schema_version"] == 1
    assert doc["counts"] == {"failures": 6, "sessions": 5, "users": 4}
    assert doc["representative"]["replay_url"] == (
        "https://rs.example.org/sessions/session-A?t=20000"
    )
    assert doc["representative"]["ts"].endswith("Z")
    assert set(doc["top"]) == {"browser", "os", "url", "release"}
    assert doc["top"]["url"] == [{"value": "/cart", "count": 6}]
    assert doc["steps"][-1] == {
        "kind": "click",
        "label": PAY,
        "offset_ms": 19_600,
        "seconds_before": 0.4,
    }
    assert doc["last_step_agreement"] == {
        "label": PAY,
        "matching_sessions": 3,
        "sessions_considered": 4,
    }
    assert doc["confidence"]["label"] == "high"
    session_keys = {
        "session_id", "user", "browser", "os", "failures", "offset_ms", "last_seen",
        "replay_status", "expired", "replay_url",
    }  # fmt: skip
    assert all(set(s) == session_keys for s in doc["sessions"])
    expired = next(s for s in doc["sessions"] if s["session_id"] == "session-C")
    assert expired["replay_url"] is None
    assert len(doc["daily"]["counts"]) == 14 and len(doc["daily"]["start"]) == 10
    assert evidence_json(ev)["representative"]["replay_url"] is None  # no base URL given


def test_get_evidence_not_found(feed: Feed) -> None:
    with pytest.raises(NotFound):
        evidence(feed, 77)


def test_change_status_runs_through_a_writer(feed: Feed) -> None:
    cid = five_sessions(feed)
    assert DirectWriter(feed.conn).call(lambda c: change_status(c, cid, "ignore")) == "ignored"
    assert evidence(feed, cid).history[-1].action == "ignored"


# --- end to end: SDK in chromium -> real server -> replay + cluster jobs -> evidence ----------

SHOP = """
<button id="pay" class="btn primary">Pay now</button>
<script>
document.getElementById("pay").addEventListener("click", function payNow() {
  const cart = window.cartFromServer;  // undefined: the bug
  return cart.total;
});
</script>
"""


@pytest.mark.browser
@pytest.mark.slow
def test_two_sdk_sessions_hitting_one_bug_make_one_issue_with_evidence(
    browser: Any, static_site: StaticSite, serve: Callable[..., ServerProcess]
) -> None:
    server = serve(cluster_interval_seconds="0.3", replay_interval_seconds="0.3")
    _site, key = add_site(server.settings, "shop", [static_site.origin])
    options = {"flushIntervalMs": 200}
    url = static_site.write("cart.html", sdk_page(server, key, body=SHOP, options=options))
    for _ in range(2):  # two browser contexts: two sessions, two anonymous users
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_timeout(400)  # some replay before the failure
            page.click("#pay")
            page.wait_for_timeout(300)
            page.evaluate("rs.flush()")
        finally:
            context.close()
    db = server.settings.db_path

    def ready() -> bool:
        rows = query(
            db,
            "SELECT count(*) FROM sessions s JOIN failures f ON f.session_id = s.id "
            "WHERE s.replay_status = 'ready' AND f.cluster_id IS NOT NULL "
            "AND f.ts BETWEEN s.replay_start_ts AND s.replay_end_ts",
        )
        issues_open = query(db, "SELECT count(*) FROM clusters WHERE status = 'open'")
        return bool(rows[0][0] == 2 and issues_open[0][0] == 1)

    wait_for(ready, what="two replays containing the failure and one open issue")
    [(issue_id,)] = query(db, "SELECT id FROM clusters")

    with reading(db) as conn:
        ev = get_evidence(conn, issue_id)
    assert (ev.issue.failure_count, ev.issue.session_count, ev.issue.user_count) == (2, 2, 2)
    assert "reading 'total'" in ev.issue.title
    assert ev.issue.culprit is not None and "payNow" in ev.issue.culprit
    rep = ev.representative
    assert rep is not None and rep.replay_status == "ready" and rep.context_ms > 0
    [(marker_offset,)] = query(
        db,
        "SELECT offset_ms FROM replay_markers WHERE kind = 'failure' AND failure_id = ?",
        rep.failure_id,
    )
    assert rep.offset_ms == marker_offset
    assert ev.steps and ev.steps[-1].kind == "click"
    assert ev.steps[-1].label == 'button "Pay now"'
    assert ev.last_step_agreement == LastStepAgreement('button "Pay now"', 2, 2)
    assert ev.confidence.label == "medium"  # 2 sessions, 2 users, same last step (high needs 3)
    link = replay_url(ev, server.base_url)
    assert link == f"{server.base_url}/sessions/{rep.session_id}?t={marker_offset}"
