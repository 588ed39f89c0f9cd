"""The alert outbox: rows written in the promotion's transaction, claims, and pruning."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrospec.alerts import deliver, outbox, rules
from tests.support.alerting import make, statuses, two_sessions, write
from tests.support.envelopes import error
from tests.support.feeds import make_feed, sid
from tests.support.receivers import HttpReceiver


def test_promotion_queues_one_row_per_matching_rule_in_its_transaction(tmp_path: Path) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_email_rule(c, "ops@example.com"))
    write(feed, lambda c: rules.add_email_rule(c, "shop@example.com", site="shop"))
    write(feed, lambda c: rules.add_email_rule(c, "spikes@example.com", events=("spike",)))
    other = make_feed(feed.settings, "blog")
    write(feed, lambda c: rules.add_email_rule(c, "blog@example.com", site="blog"))
    feed.send(sid(), error())
    feed.cluster()
    assert statuses(feed) == {}  # a candidate alerts nobody
    feed.send(sid(), error())
    feed.cluster()
    rows = feed.rows(
        "SELECT o.event, r.target, o.created_at = c.promoted_at FROM alert_outbox o "
        "JOIN alert_rules r ON r.id = o.rule_id JOIN clusters c ON c.id = o.cluster_id "
        "ORDER BY r.id"
    )
    # Same timestamp as the promotion: written by the same write function, in its transaction.
    assert rows == [("promoted", "ops@example.com", 1), ("promoted", "shop@example.com", 1)]
    feed.send(sid(), error())
    feed.cluster()
    assert len(feed.rows("SELECT id FROM alert_outbox")) == 2  # more failures: nothing more
    other.conn.close()


def test_an_issue_promoted_in_the_batch_that_creates_it_queues_its_alerts(tmp_path: Path) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_email_rule(c, "shop@example.com", site="shop"))
    other = make_feed(feed.settings, "blog")
    write(feed, lambda c: rules.add_email_rule(c, "blog@example.com", site="blog"))
    feed.send(sid(), error())
    feed.send(sid(), error())
    feed.cluster()  # one batch: the cluster is created already promoted
    rows = feed.rows(
        "SELECT o.event, r.target, o.created_at = c.promoted_at FROM alert_outbox o "
        "JOIN alert_rules r ON r.id = o.rule_id JOIN clusters c ON c.id = o.cluster_id"
    )
    assert rows == [("promoted", "shop@example.com", 1)]  # the rule of its own site only
    assert feed.rows("SELECT action FROM issue_events") == [("promoted",)]
    other.conn.close()


def test_a_failed_cluster_batch_queues_no_alert(tmp_path: Path) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_email_rule(c, "ops@example.com"))
    feed.send(sid(), error())
    feed.send(sid(), error())

    def boom(ids: list[int]) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        feed.cluster(midway=boom)
    assert statuses(feed) == {}
    assert feed.value("SELECT count(*) FROM clusters WHERE status = 'open'") == 0


def test_a_lost_claim_is_not_marked_twice(tmp_path: Path) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_email_rule(c, "dev@example.com"))
    two_sessions(feed)
    feed.cluster()
    (row_id,) = feed.rows("SELECT id FROM alert_outbox")[0]
    now = deliver.now_ms()
    first = write(feed, lambda c: outbox.claim(c, row_id, now, lease_ms=0))
    second = write(feed, lambda c: outbox.claim(c, row_id, now, lease_ms=60_000))
    assert first is not None and second is not None and second.attempts == 2
    # The first claimant comes back late: its outcome is logged but does not overwrite.
    assert not write(feed, lambda c: outbox.record(c, first, "sent", "late", now=now))
    assert write(feed, lambda c: outbox.record(c, second, "sent", "ok", now=now))
    assert statuses(feed) == {"sent": 1}


def test_old_finished_alerts_are_pruned_and_waiting_ones_kept(tmp_path: Path) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_webhook_rule(c, HttpReceiver().url))
    two_sessions(feed)
    feed.cluster()
    now = deliver.now_ms()
    write(feed, lambda c: c.execute("UPDATE alert_outbox SET created_at = created_at - ?",
                                    (outbox.KEEP_MS + 1000,)))  # fmt: skip
    write(feed, lambda c: outbox.log_delivery(c, outbox_id=None, rule_id=1, cluster_id=None,
                                             event="test", attempt=1, outcome="sent", detail="",
                                             at=now - outbox.KEEP_MS - 1000))  # fmt: skip
    assert write(feed, lambda c: outbox.prune(c, now)) == 1  # the log row; the alert waits
    assert statuses(feed) == {"pending": 1}
    write(feed, lambda c: c.execute("UPDATE alert_outbox SET status = 'sent'"))
    assert write(feed, lambda c: outbox.prune(c, now)) == 1
    assert statuses(feed) == {}
