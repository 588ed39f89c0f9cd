"""Alert rules: targets validated once, events parsed, webhook URLs shown only in part."""

from __future__ import annotations

import pytest

from retrospec.alerts import rules
from retrospec.errors import BadRequest
from retrospec.settings import Settings
from tests.support.alerting import write
from tests.support.feeds import make_feed


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
