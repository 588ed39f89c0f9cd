"""Alert payloads: Slack's incoming-webhook schema, Discord's limits, no header or markup
injection from client text, the HMAC signature."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

import pytest

from retrospec.alerts import formats, messages
from tests.support import slack


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
    payload = formats.slack(nasty_alert(), rule_id=3)
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
    slack.validate(formats.slack(digest, rule_id=3))
    with pytest.raises(Exception, match=r"is too long|does not match|is not valid"):
        slack.validate(
            {
                "text": "x",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}],
            }
        )


def test_discord_payload_stays_within_limits_and_mentions_nobody() -> None:
    payload = formats.discord(nasty_alert(), rule_id=3)
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
    rendered = formats.email(evil, rule_id=1)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_signature_is_hmac_sha256_of_the_body() -> None:
    rendered = formats.webhook(
        nasty_alert(), fmt="json", rule_id=1, secret="k" * 16, delivery_id="d1", sent_at=0
    )
    mac = hmac.new(b"k" * 16, rendered.body, hashlib.sha256).hexdigest()
    assert rendered.headers["X-Retrospec-Signature"] == "sha256=" + mac
    unsigned = formats.webhook(
        nasty_alert(), fmt="slack", rule_id=1, secret=None, delivery_id="d1", sent_at=0
    )
    assert "X-Retrospec-Signature" not in unsigned.headers


def test_every_format_links_the_clip_when_there_is_one() -> None:
    clip = "https://retrospec.example.com/issues/7/clip.mp4"
    alert = dataclasses.replace(nasty_alert(), clip_url=clip)
    assert f"Video of the moments before the failure: {clip}" in formats.email(alert, 1).text
    payload = formats.slack(alert, rule_id=1)
    slack.validate(payload)
    buttons = next(b for b in payload["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[-1]["url"] == clip
    assert f"[Video of the moments before the failure]({clip})" in json.dumps(
        formats.discord(alert, rule_id=1)
    )
    assert formats.json_document(alert, 1, "d1", 0)["clip_url"] == clip
    plain = formats.email(nasty_alert(), 1).text
    assert "clip.mp4" not in plain and "Video of" not in plain
