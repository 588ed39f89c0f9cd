"""The deliver job in process: one message per event and channel, retries after a receiver
comes back, crash recovery, digests and spikes."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

from typer.testing import CliRunner

from retrospec.alerts import deliver, outbox, rules
from retrospec.cli import main as cli
from tests.support import slack
from tests.support.alerting import make, run, statuses, two_sessions, write
from tests.support.envelopes import error
from tests.support.feeds import sid
from tests.support.receivers import HttpReceiver, SmtpReceiver


def test_one_email_and_one_webhook_per_promotion_then_one_per_regression(
    tmp_path: Path, smtp: SmtpReceiver, hook: HttpReceiver
) -> None:
    feed = make(tmp_path, smtp, smtp_from="alerts@example.com")
    write(feed, lambda c: rules.add_email_rule(c, "dev@example.com"))
    hook_rule = write(feed, lambda c: rules.add_webhook_rule(c, hook.url, secret="s3cret-key!"))
    two_sessions(feed)
    feed.cluster()
    result = run(feed)
    assert result.details["sent"] == 2
    (mail,) = smtp.wait(1)
    (hit,) = hook.wait(1)
    cid = feed.value("SELECT id FROM clusters")
    issue_url = f"https://retrospec.example.com/issues/{cid}"
    assert mail["Subject"].startswith("[RetroSpec] New issue in shop: TypeError")
    assert mail["From"] == "alerts@example.com" and mail["To"] == "dev@example.com"
    body = mail.get_content()
    assert issue_url in body and "First release: 1.4.2" in body
    assert "Failures: 2 · Sessions: 2 · Users: 2" in body
    doc = hit.json()
    assert doc["event"] == "promoted" and doc["issue"]["id"] == cid
    assert doc["issue_url"] == issue_url and doc["issue"]["url"] == issue_url
    assert doc["first_release"] == "1.4.2"
    assert hit.headers["X-Retrospec-Delivery"] == doc["id"]
    # The signature is HMAC-SHA256 of the exact body with the rule's secret.
    expected = hmac.new(b"s3cret-key!", hit.body, hashlib.sha256).hexdigest()
    assert hit.headers["X-Retrospec-Signature"] == f"sha256={expected}"
    assert hook_rule.secret == "s3cret-key!"

    # More failures of the same issue: nothing more.
    feed.send(sid(), error())
    feed.cluster()
    assert run(feed).details["sent"] == 0
    # Resolved, then a new failure: one regression alert per rule.
    feed.set_status(cid, "resolve")
    time.sleep(0.01)
    feed.send(sid(), error())
    feed.cluster()
    assert run(feed).details["sent"] == 2
    mails = smtp.wait(2)
    hits = hook.wait(2)
    assert mails[1]["Subject"].startswith("[RetroSpec] Regression in shop")
    assert hits[1].json()["event"] == "regression"
    assert run(feed).details["sent"] == 0
    assert len(smtp.messages) == 2 and len(hook.hits) == 2
    log = outbox.list_deliveries(feed.conn)
    assert [d.outcome for d in log] == ["sent"] * 4


def test_a_receiver_that_is_down_gets_the_alert_when_it_returns(tmp_path: Path) -> None:
    feed = make(tmp_path)
    hook = HttpReceiver()  # not started: connections are refused
    write(feed, lambda c: rules.add_webhook_rule(c, hook.url, fmt="discord"))
    two_sessions(feed)
    feed.cluster()
    first = run(feed).details
    assert (first["sent"], first["retrying"]) == (0, 1)
    row = feed.rows("SELECT status, attempts, last_error FROM alert_outbox")[0]
    assert row[0] == "pending" and row[1] == 1 and "unreachable" in row[2]
    assert run(feed).details["sent"] == 0  # still backing off: not even attempted
    assert feed.value("SELECT attempts FROM alert_outbox") == 1
    hook.status = 503
    hook.start()
    try:
        time.sleep(0.25)
        assert run(feed).details["retrying"] == 1  # a 5xx is retried too
        hook.status = 200
        time.sleep(0.5)
        assert run(feed).details["sent"] == 1
        (hit,) = hook.wait(1)
        assert hit.json()["embeds"][0]["title"].startswith("TypeError")
    finally:
        hook.stop()
    outcomes = [d.outcome for d in reversed(outbox.list_deliveries(feed.conn))]
    assert outcomes == ["retry", "retry", "sent"]
    assert statuses(feed) == {"sent": 1}


def test_retries_end_after_the_last_attempt(tmp_path: Path) -> None:
    feed = make(tmp_path, alert_max_attempts=2, alert_retry_seconds=0.05)
    write(feed, lambda c: rules.add_webhook_rule(c, HttpReceiver().url))  # nobody listens
    two_sessions(feed)
    feed.cluster()
    run(feed)
    time.sleep(0.1)
    assert run(feed).details["failed"] == 1
    (status, error_text) = feed.rows("SELECT status, last_error FROM alert_outbox")[0]
    assert status == "failed" and error_text.startswith("gave up after 2 attempts")


def test_a_claim_left_by_a_dead_process_is_sent_once_more_with_the_same_key(
    tmp_path: Path, smtp: SmtpReceiver
) -> None:
    feed = make(tmp_path, smtp)
    write(feed, lambda c: rules.add_email_rule(c, "dev@example.com"))
    two_sessions(feed)
    feed.cluster()
    (row_id,) = feed.rows("SELECT id FROM alert_outbox")[0]
    # A process claimed the row, sent nothing we know of, and was killed (no "sent" mark).
    claimed = write(feed, lambda c: outbox.claim(c, row_id, deliver.now_ms(), lease_ms=200))
    assert claimed is not None and claimed.attempts == 1
    assert run(feed).details["sent"] == 0  # the lease still holds: nobody else sends it
    time.sleep(0.25)
    assert run(feed).details["sent"] == 1
    (mail,) = smtp.wait(1)
    assert feed.rows("SELECT status, attempts FROM alert_outbox") == [("sent", 2)]
    # Every attempt of this row carries the same Message-ID, so a copy sent before the crash
    # and this one deduplicate at the receiver.
    key = feed.value("SELECT dedupe_key FROM alert_outbox")
    assert mail["Message-ID"] == deliver.message_id(feed.settings, key)
    assert run(feed).details["sent"] == 0
    assert len(smtp.messages) == 1


def test_twenty_issues_promoted_at_once_become_one_digest(
    tmp_path: Path, smtp: SmtpReceiver, hook: HttpReceiver
) -> None:
    feed = make(tmp_path, smtp)
    write(feed, lambda c: rules.add_email_rule(c, "dev@example.com"))
    write(feed, lambda c: rules.add_webhook_rule(c, hook.url, fmt="slack"))
    for n in range(20):
        two_sessions(feed, message=f"deploy bug {n}", stack=None, fingerprint=[f"deploy-{n}"])
    feed.cluster()
    assert feed.value("SELECT count(*) FROM clusters WHERE status = 'open'") == 20
    result = run(feed)
    assert result.details["digests"] == 2 and result.details["sent"] == 2
    (mail,) = smtp.wait(1)
    assert mail["Subject"] == "[RetroSpec] 20 alerts in 5 minutes (digest)"
    assert mail.get_content().count("https://retrospec.example.com/issues/") == 20
    (hit,) = hook.wait(1)
    slack.validate(hit.json())
    assert statuses(feed) == {"digested": 40, "sent": 2}
    assert run(feed).details["sent"] == 0


def test_five_alerts_go_one_by_one_and_a_flood_waits_for_the_window(
    tmp_path: Path, hook: HttpReceiver
) -> None:
    feed = make(tmp_path, alert_digest_threshold=5)
    write(feed, lambda c: rules.add_webhook_rule(c, hook.url))
    for n in range(5):
        two_sessions(feed, message=f"bug {n}", stack=None, fingerprint=[f"bug-{n}"])
    feed.cluster()
    result = run(feed)
    assert result.details["sent"] == 5 and result.details["digests"] == 0
    assert [h.json()["event"] for h in hook.hits] == ["promoted"] * 5
    for n in range(5, 7):  # the 6th and 7th within the window: a digest
        two_sessions(feed, message=f"bug {n}", stack=None, fingerprint=[f"bug-{n}"])
    feed.cluster()
    assert run(feed).details["digests"] == 1
    assert hook.hits[-1].json()["event"] == "digest" and hook.hits[-1].json()["count"] == 2
    two_sessions(feed, message="bug 7", stack=None, fingerprint=["bug-7"])
    feed.cluster()
    # One digest per window: the 8th waits for the window to end instead of a second digest.
    result = run(feed)
    assert result.details["digests"] == 0 and result.details["sent"] == 0
    assert len(hook.hits) == 6
    due = feed.value("SELECT due_at - created_at FROM alert_outbox WHERE status = 'pending'")
    assert 4 * 60_000 < due <= 5 * 60_000


def test_a_spike_alerts_once_per_window(tmp_path: Path, hook: HttpReceiver) -> None:
    feed = make(tmp_path, spike_threshold=4, spike_window_minutes=10)
    write(feed, lambda c: rules.add_webhook_rule(c, hook.url, events=("spike",)))
    two_sessions(feed)
    feed.cluster()
    assert run(feed).details["spikes"] == 0  # 2 failures: no spike (and no promoted rule)
    for _ in range(2):
        feed.send(sid(), error())
    feed.cluster()
    result = run(feed)
    assert result.details["spikes"] == 1 and result.details["sent"] == 1
    doc = hook.wait(1)[0].json()
    assert doc["event"] == "spike" and doc["spike"] == {"failures": 4, "window_minutes": 10}
    for _ in range(5):
        feed.send(sid(), error())
    feed.cluster()
    assert run(feed).details["spikes"] == 0  # rate-limited: one per issue per window
    assert len(hook.hits) == 1


def test_jobs_run_deliver_from_the_cli(tmp_path: Path, hook: HttpReceiver) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_webhook_rule(c, hook.url))
    two_sessions(feed)
    feed.cluster()
    env = {"RETROSPEC_DATA_DIR": feed.settings.data_dir, "RETROSPEC_ALERT_DELAY_SECONDS": "0"}
    result = CliRunner().invoke(cli.app, ["jobs", "run", "deliver", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["job"] == "deliver" and doc["items"] == 1 and doc["details"]["sent"] == 1
    assert hook.wait(1)[0].json()["event"] == "promoted"
