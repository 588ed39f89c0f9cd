"""Sending through real receivers: SMTP (plain, STARTTLS, refused), webhooks (4xx, hung),
and what is retried."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest

from retrospec.alerts import outbox, rules
from retrospec.alerts.channels import parse_smtp_url, redact_smtp_url
from retrospec.errors import ConfigError
from tests.support.alerting import make, run, statuses, two_sessions, write
from tests.support.data import make_settings
from tests.support.receivers import HttpReceiver, SmtpReceiver, self_signed_cert, silent_port


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


def test_a_hung_channel_does_not_hold_up_another(tmp_path: Path, hook: HttpReceiver) -> None:
    feed = make(tmp_path, alert_timeout_seconds=1.5)
    sock, port = silent_port()  # accepts, never answers
    try:
        write(feed, lambda c: rules.add_webhook_rule(c, f"http://127.0.0.1:{port}/hook"))
        write(feed, lambda c: rules.add_webhook_rule(c, hook.url))
        for n in range(5):
            two_sessions(feed, message=f"bug {n}", stack=None, fingerprint=[f"bug-{n}"])
        feed.cluster()
        start = time.monotonic()
        result = run(feed)
        took = time.monotonic() - start
    finally:
        sock.close()
    assert result.details["sent"] == 5 and result.details["retrying"] == 1
    assert len(hook.hits) == 5
    # The hung receiver cost one timeout, not one per queued alert (5 would take 7.5 s).
    assert took < 1.5 * 3
    hung = feed.rows(
        "SELECT o.attempts, o.due_at > o.created_at FROM alert_outbox o JOIN alert_rules r "
        "ON r.id = o.rule_id WHERE r.target LIKE ? ORDER BY o.id",
        (f"%:{port}/%",),
    )
    assert [a for a, _ in hung] == [1, 0, 0, 0, 0] and all(later for _, later in hung)


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
