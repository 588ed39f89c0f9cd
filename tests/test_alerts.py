"""Alerts in process: rules, the outbox written with the promotion, delivery to a real SMTP
server and a real HTTP receiver, retries, digests, spikes, crash recovery, payload formats."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from retrospec.alerts import deliver, messages, outbox, rules
from retrospec.alerts.channels import parse_smtp_url, redact_smtp_url
from retrospec.cli import main as cli
from retrospec.errors import BadRequest, ConfigError
from retrospec.jobs.context import JobResult
from retrospec.settings import Settings
from retrospec.storage.db import DirectWriter
from retrospec.storage.migrations import prepare_database
from tests.support import slack
from tests.support.data import make_settings
from tests.support.envelopes import error
from tests.support.feeds import Feed, make_feed, sid
from tests.support.receivers import HttpReceiver, SmtpReceiver, self_signed_cert, silent_port
from tests.support.shop import run_cli

FAST = {
    "alert_delay_seconds": 0,
    "alert_retry_seconds": 0.2,
    "alert_timeout_seconds": 2,
    "public_url": "https://retrospec.example.com",
}


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def make(tmp_path: Path, smtp: SmtpReceiver | None = None, **overrides: Any) -> Feed:
    values = {**FAST, **overrides}
    if smtp is not None:
        values.setdefault("smtp_url", smtp.url)
    settings = make_settings(tmp_path / "data", **values)
    prepare_database(settings.db_path)
    return make_feed(settings)


def write(feed: Feed, fn: Any) -> Any:
    return DirectWriter(feed.conn).call(fn)


def run(feed: Feed, **options: Any) -> JobResult:
    return deliver.run(feed.context(**options))


def two_sessions(feed: Feed, **failure: Any) -> None:
    """The same bug in two sessions: with promote_after 2 the cluster job promotes it."""
    feed.send(sid(), error(**failure), user="u1")
    feed.send(sid(), error(**failure), user="u2")


def statuses(feed: Feed) -> dict[str, int]:
    return outbox.outbox_counts(feed.conn)


# --- rules ---------------------------------------------------------------------------------------


def test_rules_validate_their_targets(settings: Settings) -> None:
    feed = make_feed(settings)
    with pytest.raises(BadRequest, match="not an e-mail address"):
        write(feed, lambda c: rules.add_email_rule(c, "ops at example"))
    with pytest.raises(BadRequest, match="https:// or http://"):
        write(feed, lambda c: rules.add_webhook_rule(c, "ftp://hooks.example.com/x"))
    with pytest.raises(BadRequest, match="https:// or http://"):
        write(feed, lambda c: rules.add_webhook_rule(c, "javascript:alert(1)"))
    with pytest.raises(BadRequest, match="format"):
        write(feed, lambda c: rules.add_webhook_rule(c, "https://x.example/h", fmt="teams"))
    with pytest.raises(BadRequest, match="unknown event"):
        rules.parse_events("promoted,exploded")
    with pytest.raises(BadRequest, match="secret"):
        write(feed, lambda c: rules.add_webhook_rule(c, "https://x.example/h", secret="short"))
    assert rules.list_rules(feed.conn) == []  # nothing partial stored
    rule = write(feed, lambda c: rules.add_webhook_rule(c, "https://x.example/h"))
    assert rule.secret and rule.secret.startswith("whsec_")  # JSON webhooks are always signed
    assert rule.events == rules.EVENTS
    slack_rule = write(
        feed,
        lambda c: rules.add_webhook_rule(
            c, "https://hooks.slack.com/services/T000/B000/XXXX", fmt="slack", site="shop",
            events=rules.parse_events("spike, promoted"),
        ),
    )  # fmt: skip
    assert slack_rule.secret is None and slack_rule.events == ("promoted", "spike")
    assert slack_rule.site_name == "shop"
    # Webhook URLs are credentials: listings show only their start.
    assert "XXXX" not in slack_rule.target_label
    assert slack_rule.target_label.startswith("https://hooks.slack.com/")


def test_smtp_url_parsing_and_redaction() -> None:
    cfg = parse_smtp_url("smtp://me%40x.com:p%3Ass@mail.example.com:587")
    assert (cfg.host, cfg.port, cfg.implicit_tls) == ("mail.example.com", 587, False)
    assert (cfg.username, cfg.password) == ("me@x.com", "p:ss")
    assert parse_smtp_url("smtps://mail.example.com").port == 465
    assert parse_smtp_url("smtp://mail.example.com").port == 25
    with pytest.raises(ConfigError):
        parse_smtp_url("http://mail.example.com")
    with pytest.raises(ConfigError):
        parse_smtp_url("smtp://:25")
    assert "p%3Ass" not in redact_smtp_url("smtp://me:p%3Ass@mail.example.com:587")
    with pytest.raises(ConfigError, match="smtp://"):
        make_settings(Path("/nonexistent"), smtp_url="mail.example.com:25")


# --- the outbox is written with the promotion ----------------------------------------------------


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


# --- delivery ------------------------------------------------------------------------------------


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


def test_a_4xx_answer_is_not_retried(tmp_path: Path, hook: HttpReceiver) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_webhook_rule(c, hook.url))
    hook.status = 410
    two_sessions(feed)
    feed.cluster()
    assert run(feed).details["failed"] == 1
    assert statuses(feed) == {"failed": 1}
    time.sleep(0.3)
    again = run(feed).details
    assert (again["sent"], again["retrying"], again["failed"]) == (0, 0, 0)
    (entry,) = outbox.list_deliveries(feed.conn)
    assert entry.outcome == "failed" and "410" in (entry.detail or "")


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


def test_a_hung_channel_does_not_hold_up_another(tmp_path: Path, hook: HttpReceiver) -> None:
    feed = make(tmp_path, alert_timeout_seconds=1.5)
    sock, port = silent_port()  # accepts, never answers
    try:
        write(feed, lambda c: rules.add_webhook_rule(c, f"http://127.0.0.1:{port}/hook"))
        write(feed, lambda c: rules.add_webhook_rule(c, hook.url))
        for n in range(3):
            two_sessions(feed, message=f"bug {n}", stack=None, fingerprint=[f"bug-{n}"])
        feed.cluster()
        start = time.monotonic()
        result = run(feed)
        took = time.monotonic() - start
    finally:
        sock.close()
    assert result.details["sent"] == 3 and result.details["retrying"] == 1
    assert len(hook.hits) == 3
    # The hung receiver cost one timeout, not one per queued alert.
    assert took < 1.5 * 2
    hung = feed.rows(
        "SELECT o.attempts, o.due_at > o.created_at FROM alert_outbox o JOIN alert_rules r "
        "ON r.id = o.rule_id WHERE r.target LIKE ? ORDER BY o.id",
        (f"%:{port}/%",),
    )
    assert [a for a, _ in hung] == [1, 0, 0] and all(later for _, later in hung)


def test_email_without_smtp_url_waits_and_says_why(tmp_path: Path) -> None:
    feed = make(tmp_path)
    write(feed, lambda c: rules.add_email_rule(c, "dev@example.com"))
    two_sessions(feed)
    feed.cluster()
    assert run(feed).details["retrying"] == 1
    (entry,) = outbox.list_deliveries(feed.conn)
    assert "smtp_url is not set" in (entry.detail or "")


def test_unreachable_smtp_host_is_retried_and_refused_recipient_is_not(tmp_path: Path) -> None:
    closed = SmtpReceiver()  # never started
    feed = make(tmp_path, closed)
    write(feed, lambda c: rules.add_email_rule(c, "dev@example.com"))
    two_sessions(feed)
    feed.cluster()
    assert run(feed).details["retrying"] == 1
    assert "unreachable" in (outbox.list_deliveries(feed.conn)[0].detail or "")
    refusing = SmtpReceiver(port=closed.port, reject_rcpt=550).start()
    try:
        time.sleep(0.25)
        assert run(feed).details["failed"] == 1
    finally:
        refusing.stop()
    assert "550" in (outbox.list_deliveries(feed.conn)[0].detail or "")


def test_starttls_is_used_when_the_server_offers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    smtp = SmtpReceiver(tls_context=context, require_starttls=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate
    try:
        feed = make(tmp_path, smtp)
        write(feed, lambda c: rules.add_email_rule(c, "dev@example.com"))
        two_sessions(feed)
        feed.cluster()
        assert run(feed).details["sent"] == 1
        smtp.wait(1)
        assert smtp.starttls_used
    finally:
        smtp.stop()


# --- crash recovery ------------------------------------------------------------------------------


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


# --- digests and spikes --------------------------------------------------------------------------


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


# --- formats -------------------------------------------------------------------------------------


def nasty_alert() -> messages.IssueAlert:
    steps = (messages.Step("clicked", 'button "<!channel> & *pay*"', 1.5),)
    return messages.IssueAlert(
        event="promoted",
        site_name="shop",
        title="TypeError: <!channel> @everyone <https://evil.example|click> " + "x" * 5000,
        kind="error",
        culprit="checkout (app.js) `drop`",
        failures=3,
        sessions=2,
        users=2,
        first_seen=1_732_560_000_000,
        last_seen=1_732_560_005_000,
        first_release="1.4.2",
        steps=steps,
        issue_url="https://retrospec.example.com/issues/7",
        replay_url="https://retrospec.example.com/sessions/abc?t=1500",
    )


def test_slack_payload_matches_slack_incoming_webhook_schema() -> None:
    payload = messages.slack(nasty_alert(), rule_id=3)
    slack.validate(payload)
    text = json.dumps(payload)
    # Client text cannot ping the channel or inject a link.
    assert "<!channel>" not in text and "<https://evil.example" not in text
    assert "&lt;!channel&gt;" in text
    buttons = next(b for b in payload["blocks"] if b["type"] == "actions")["elements"]
    assert [b["url"] for b in buttons] == [
        "https://retrospec.example.com/issues/7",
        "https://retrospec.example.com/sessions/abc?t=1500",
    ]
    digest = messages.Digest(
        alerts=tuple(nasty_alert() for _ in range(60)), window_minutes=5, dashboard_url="https://r/"
    )
    slack.validate(messages.slack(digest, rule_id=3))
    with pytest.raises(Exception, match=r"is too long|does not match|is not valid"):
        slack.validate(
            {
                "text": "x",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}],
            }
        )


def test_discord_payload_stays_within_limits_and_mentions_nobody() -> None:
    payload = messages.discord(nasty_alert(), rule_id=3)
    assert payload["allowed_mentions"] == {"parse": []}
    embed = payload["embeds"][0]
    assert len(payload["content"]) <= 2000 and len(embed["title"]) <= 256
    assert len(embed["description"]) <= 4096
    assert all(len(f["value"]) <= 1024 and len(f["name"]) <= 256 for f in embed["fields"])
    assert embed["url"] == "https://retrospec.example.com/issues/7"
    total = sum(len(str(v)) for v in (embed["title"], embed["description"]))
    total += sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert total <= 6000


def test_email_headers_cannot_be_injected() -> None:
    alert = nasty_alert()
    evil = dataclasses.replace(alert, title="x\r\nBcc: victim@example.com")
    rendered = messages.email(evil, rule_id=1)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_signature_is_hmac_sha256_of_the_body() -> None:
    rendered = messages.webhook(
        nasty_alert(), fmt="json", rule_id=1, secret="k" * 16, delivery_id="d1", sent_at=0
    )
    mac = hmac.new(b"k" * 16, rendered.body, hashlib.sha256).hexdigest()
    assert rendered.headers["X-Retrospec-Signature"] == "sha256=" + mac
    unsigned = messages.webhook(
        nasty_alert(), fmt="slack", rule_id=1, secret=None, delivery_id="d1", sent_at=0
    )
    assert "X-Retrospec-Signature" not in unsigned.headers


# --- the CLI -------------------------------------------------------------------------------------


def invoke(settings: Settings, *args: str) -> Result:
    """`retrospec ARGS` in process (errors surface as result.exception with its exit code)."""
    return CliRunner().invoke(cli.app, list(args), env={"RETROSPEC_DATA_DIR": settings.data_dir})


def test_cli_manages_rules_and_sends_a_test(
    settings: Settings, smtp: SmtpReceiver, hook: HttpReceiver
) -> None:
    make_feed(settings).conn.close()
    result = invoke(settings, "alerts", "add", "email", "--to", "dev@example.com", "--json")
    assert result.exit_code == 0, result.output
    added = json.loads(result.stdout)
    assert added["channel"] == "email" and added["events"] == ["promoted", "regression", "spike"]
    assert "smtp_url is not set" in result.stderr
    result = invoke(
        settings, "alerts", "add", "webhook", "--url", hook.url, "--format", "json",
        "--site", "shop", "--on", "promoted,regression",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "signing secret" in result.stdout and "whsec_" in result.stdout
    result = invoke(settings, "alerts", "list", "--json")
    listed = json.loads(result.stdout)["rules"]
    assert [r["id"] for r in listed] == [added["id"], added["id"] + 1]
    assert listed[1]["site"]["name"] == "shop" and listed[1]["signed"] is True
    assert "whsec_" not in result.stdout
    table = invoke(settings, "alerts", "list").stdout
    assert "dev@example.com" in table and "json" in table
    # A test send through each rule, printed and logged.
    result = invoke(settings, "alerts", "test", str(added["id"]), "--smtp-url", smtp.url)
    assert result.exit_code == 0, result.output
    assert "sent a test alert" in result.stdout
    (mail,) = smtp.wait(1)
    assert mail["Subject"].startswith("[RetroSpec] Test alert from RetroSpec")
    result = invoke(settings, "alerts", "test", str(added["id"] + 1))
    assert result.exit_code == 0, result.output
    assert hook.wait(1)[0].json()["event"] == "test"
    log = json.loads(invoke(settings, "alerts", "log", "--json").stdout)["deliveries"]
    assert [(d["event"], d["outcome"]) for d in log] == [("test", "sent"), ("test", "sent")]
    assert "test" in invoke(settings, "alerts", "log").stdout
    result = invoke(settings, "alerts", "remove", str(added["id"]))
    assert result.exit_code == 0 and "removed alert rule" in result.stdout
    assert len(json.loads(invoke(settings, "alerts", "list", "--json").stdout)["rules"]) == 1


def test_cli_bad_input_is_refused_with_a_clear_error(settings: Settings) -> None:
    make_feed(settings).conn.close()
    cases = [
        (["alerts", "add", "email", "--to", "not-an-address"], "not an e-mail address"),
        (["alerts", "add", "webhook", "--url", "ftp://x.example/h"], "https:// or http://"),
        (["alerts", "add", "email", "--to", "a@b.example", "--on", "boom"], "unknown event"),
        (["alerts", "add", "email", "--to", "a@b.example", "--site", "nope"], "no site"),
        (["alerts", "remove", "99"], "no alert rule 99"),
        (["alerts", "test", "99"], "no alert rule 99"),
    ]
    for args, message in cases:
        result = invoke(settings, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in str(result.exception), (args, result.exception)
    bad_format = invoke(
        settings, "alerts", "add", "webhook", "--url", "https://x.example/h", "--format", "teams"
    )
    assert bad_format.exit_code == 2
    assert json.loads(invoke(settings, "alerts", "list", "--json").stdout)["rules"] == []


def test_cli_test_against_an_unreachable_smtp_host_fails_clearly(settings: Settings) -> None:
    make_feed(settings).conn.close()
    added = invoke(settings, "alerts", "add", "email", "--to", "dev@example.com", "--json")
    rule_id = json.loads(added.stdout)["id"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = invoke(
        settings, "alerts", "test", str(rule_id), "--smtp-url", f"smtp://127.0.0.1:{port}"
    )
    assert result.exit_code == 1
    assert "not delivered" in str(result.exception) and "unreachable" in str(result.exception)
    log = json.loads(invoke(settings, "alerts", "log", "--json").stdout)["deliveries"]
    assert log[0]["outcome"] == "retry"


@pytest.mark.slow
def test_entry_point_prints_one_line_errors(settings: Settings) -> None:
    make_feed(settings).conn.close()
    env = {"RETROSPEC_DATA_DIR": settings.data_dir}
    bad = run_cli(env, "alerts", "add", "webhook", "--url", "gopher://x.example/h")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "https:// or http://" in bad.stderr


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
