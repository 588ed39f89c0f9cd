"""How an alert looks in an e-mail, in Slack, in Discord and as signed JSON.

Client-supplied text (titles, culprits, step labels) never becomes markup: Slack's mrkdwn
control characters are escaped (so a title cannot say <!channel>), Discord gets
allowed_mentions = none and escaped markdown, e-mail is plain text with one-line headers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

from retrospec import __version__
from retrospec.alerts.messages import (
    DIGEST_LINES,
    Digest,
    IssueAlert,
    Notice,
    one_line,
    step_line,
    when,
)
from retrospec.clock import iso

SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Retrospec-Signature"
DELIVERY_HEADER = "X-Retrospec-Delivery"
EVENT_HEADER = "X-Retrospec-Event"
# Slack Block Kit and Discord embed limits (characters).
SLACK_SECTION, SLACK_FIELD, SLACK_HEADER, SLACK_BUTTON = 3000, 2000, 150, 75
DISCORD_CONTENT, DISCORD_TITLE, DISCORD_DESCRIPTION, DISCORD_FIELD = 2000, 256, 4096, 1024
COLORS = {"promoted": 0xDC2626, "regression": 0xEA580C, "spike": 0xD97706, "test": 0x4F46E5}


@dataclass(frozen=True, slots=True)
class Rendered:
    """A notice in one channel's shape."""

    subject: str
    text: str
    body: bytes = b""  # webhook body (JSON)
    headers: dict[str, str] = field(default_factory=dict)


# --- e-mail ------------------------------------------------------------------------------------


def email(notice: Notice, rule_id: int) -> Rendered:
    """Subject and plain-text body."""
    footer = (
        f"\n--\nSent by RetroSpec for alert rule {rule_id}. "
        f"`retrospec alerts remove {rule_id}` stops these messages."
    )
    if isinstance(notice, Digest):
        lines = [f"{notice.headline} for this rule, sent as one digest:", ""]
        for a in notice.alerts[:DIGEST_LINES]:
            lines.append(f"- {a.headline}: {one_line(a.title, 160)}")
            lines.append(f"  {a.failures} failures, {a.sessions} sessions · {a.issue_url}")
        more = (notice.total or len(notice.alerts)) - min(len(notice.alerts), DIGEST_LINES)
        if more > 0:
            lines.append(f"- and {more} more")
        lines += ["", f"All issues: {notice.dashboard_url}"]
        subject = f"[RetroSpec] {notice.headline} (digest)"
        return Rendered(subject=subject, text="\n".join(lines) + "\n" + footer + "\n")
    a = notice
    lines = [f"{a.headline} · {a.kind}", "", one_line(a.title, 1000)]
    if a.culprit:
        lines.append(f"Culprit: {one_line(a.culprit, 300)}")
    lines += [
        "",
        f"Failures: {a.failures} · Sessions: {a.sessions} · Users: {a.users}",
        f"First seen: {when(a.first_seen)} · Last seen: {when(a.last_seen)}",
        f"First release: {a.first_release or 'unknown'}",
        "",
        "Steps before the failure:",
    ]
    if a.steps:
        lines += ["  " + step_line(n, s) for n, s in enumerate(a.steps, 1)]
        lines.append(f"  {len(a.steps) + 1}. the failure happens")
    else:
        lines.append("  no recorded user actions before the failure")
    lines.append("")
    if a.replay_url:
        lines.append(f"Watch the replay at the failure: {a.replay_url}")
    if a.clip_url:
        lines.append(f"Video of the moments before the failure: {a.clip_url}")
    lines.append(f"Open the issue: {a.issue_url}")
    subject = f"[RetroSpec] {a.headline}: {one_line(a.title, 150)}"
    return Rendered(subject=one_line(subject, 250), text="\n".join(lines) + "\n" + footer + "\n")


# --- Slack ---------------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack mrkdwn treats & < > as markup (<!channel> pings everyone): escape them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    return f"<{slack_escape(url)}|{slack_escape(label).replace('|', '¦')}>"


def _slack_text(text: str, limit: int = SLACK_SECTION) -> dict[str, Any]:
    # text is already escaped and may hold line breaks on purpose; only its length is capped.
    return {"type": "mrkdwn", "text": text if len(text) <= limit else text[: limit - 1] + "…"}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": one_line(text, limit), "emoji": False}


def slack(notice: Notice, rule_id: int) -> dict[str, Any]:
    """An incoming-webhook payload: `text` (notifications, fallback) plus Block Kit blocks."""
    context = {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"RetroSpec · alert rule {rule_id}"}],
    }
    if isinstance(notice, Digest):
        lines = [
            f"• {_slack_link(a.issue_url, one_line(a.title, 120))} — {slack_escape(a.headline)}, "
            f"{a.failures} failures"
            for a in notice.alerts[:DIGEST_LINES]
        ]
        more = (notice.total or len(notice.alerts)) - min(len(notice.alerts), DIGEST_LINES)
        if more > 0:
            lines.append(f"• and {more} more")
        sections = []
        chunk = ""
        for line in lines:  # several sections rather than one over the limit
            if len(chunk) + len(line) + 1 > SLACK_SECTION:
                sections.append({"type": "section", "text": _slack_text(chunk.rstrip())})
                chunk = ""
            chunk += line + "\n"
        if chunk:
            sections.append({"type": "section", "text": _slack_text(chunk.rstrip())})
        return {
            "text": slack_escape(one_line(f"RetroSpec: {notice.headline}", SLACK_SECTION)),
            "blocks": [
                {"type": "header", "text": _plain(notice.headline, SLACK_HEADER)},
                *sections[:45],
                {
                    "type": "actions",
                    "elements": [_button("Open issues", notice.dashboard_url)],
                },
                context,
            ],
        }
    a = notice
    title = _slack_link(a.issue_url, one_line(a.title, 500))
    head = f"*{title}*"
    if a.culprit:
        head += f"\nCulprit: {slack_escape(one_line(a.culprit, 300))}"
    fields = [
        ("Failures", str(a.failures)),
        ("Sessions", str(a.sessions)),
        ("Users", str(a.users)),
        ("First release", a.first_release or "unknown"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(a.headline, SLACK_HEADER)},
        {"type": "section", "text": _slack_text(head)},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{slack_escape(one_line(value, 200))}"}
                for name, value in fields
            ],
        },
    ]
    if a.steps:
        steps = "\n".join(slack_escape(step_line(n, s)) for n, s in enumerate(a.steps, 1))
        blocks.append(
            {"type": "section", "text": _slack_text(f"*Steps before the failure*\n{steps}")}
        )
    buttons = [_button("Open issue", a.issue_url)]
    if a.replay_url:
        buttons.append(_button("Watch the replay", a.replay_url))
    if a.clip_url:
        buttons.append(_button("Video", a.clip_url))
    blocks += [{"type": "actions", "elements": buttons}, context]
    # The top-level text is mrkdwn too (notifications and fallback): escaped like the rest.
    fallback = slack_escape(one_line(f"{a.headline}: {a.title}", SLACK_SECTION))
    return {"text": fallback, "blocks": blocks}


def _button(label: str, url: str) -> dict[str, Any]:
    return {"type": "button", "text": _plain(label, SLACK_BUTTON), "url": url[:3000]}


# --- Discord -------------------------------------------------------------------------------------

_DISCORD_MD = re.compile(r"([\\*_~`|>\[\]()#-])")


def discord_escape(text: str) -> str:
    """Client text as inert Discord markdown."""
    return _DISCORD_MD.sub(r"\\\1", text)


def discord(notice: Notice, rule_id: int) -> dict[str, Any]:
    """An incoming-webhook payload with one embed; mentions are never parsed."""
    footer = {"text": f"RetroSpec · alert rule {rule_id}"}
    if isinstance(notice, Digest):
        lines = [
            f"• [{discord_escape(one_line(a.title, 100))}]({a.issue_url}) — "
            f"{discord_escape(a.headline)}, {a.failures} failures"
            for a in notice.alerts[:DIGEST_LINES]
        ]
        more = (notice.total or len(notice.alerts)) - min(len(notice.alerts), DIGEST_LINES)
        if more > 0:
            lines.append(f"• and {more} more")
        description = ""
        for line in lines:
            if len(description) + len(line) + 1 > DISCORD_DESCRIPTION:
                break
            description += line + "\n"
        digest_embed = {
            "title": one_line(notice.headline, DISCORD_TITLE),
            "url": notice.dashboard_url,
            "description": description.rstrip(),
            "color": COLORS["promoted"],
            "footer": footer,
        }
        content = one_line(f"RetroSpec: {notice.headline}", DISCORD_CONTENT)
        return {"content": content, "embeds": [digest_embed], "allowed_mentions": {"parse": []}}
    a = notice
    parts = []
    if a.culprit:
        parts.append(f"Culprit: {discord_escape(one_line(a.culprit, 300))}")
    if a.steps:
        parts.append("**Steps before the failure**")
        parts += [discord_escape(step_line(n, s)) for n, s in enumerate(a.steps, 1)]
    links = [f"[Open the issue]({a.issue_url})"]
    if a.replay_url:
        links.append(f"[Watch the replay at the failure]({a.replay_url})")
    if a.clip_url:
        links.append(f"[Video of the moments before the failure]({a.clip_url})")
    fields = [
        {"name": "Failures", "value": str(a.failures), "inline": True},
        {"name": "Sessions", "value": str(a.sessions), "inline": True},
        {"name": "Users", "value": str(a.users), "inline": True},
        {
            "name": "First release",
            "value": discord_escape(one_line(a.first_release or "unknown", DISCORD_FIELD)),
            "inline": True,
        },
        {"name": "Links", "value": " · ".join(links)[:DISCORD_FIELD], "inline": False},
    ]
    embed: dict[str, Any] = {
        "title": one_line(a.title, DISCORD_TITLE),
        "url": a.issue_url,
        "description": "\n".join(parts)[:DISCORD_DESCRIPTION],
        "color": COLORS.get(a.event, COLORS["promoted"]),
        "fields": fields,
        "footer": footer,
    }
    if a.last_seen is not None:
        embed["timestamp"] = iso(a.last_seen)
    content = one_line(f"{a.headline}: {discord_escape(a.title)}", DISCORD_CONTENT)
    return {"content": content, "embeds": [embed], "allowed_mentions": {"parse": []}}


# --- generic JSON --------------------------------------------------------------------------


def _alert_json(a: IssueAlert) -> dict[str, Any]:
    return {
        "event": a.event,
        "headline": a.headline,
        "issue": a.issue,
        "first_release": a.first_release,
        "steps": [
            {"verb": s.verb, "label": s.label, "seconds_before": s.seconds_before} for s in a.steps
        ],
        "issue_url": a.issue_url,
        "replay_url": a.replay_url,
        "clip_url": a.clip_url,
        "spike": None
        if a.spike_failures is None
        else {"failures": a.spike_failures, "window_minutes": a.spike_minutes},
    }


def json_document(notice: Notice, rule_id: int, delivery_id: str, sent_at: int) -> dict[str, Any]:
    """The generic webhook body (schema_version 1; see README "Alerts")."""
    base = {
        "schema_version": SCHEMA_VERSION,
        "id": delivery_id,
        "rule_id": rule_id,
        "sent_at": iso(sent_at),
    }
    if isinstance(notice, Digest):
        return {
            **base,
            "event": "digest",
            "headline": notice.headline,
            "window_minutes": notice.window_minutes,
            "count": notice.total or len(notice.alerts),
            "alerts": [_alert_json(a) for a in notice.alerts],
        }
    return {**base, **_alert_json(notice)}


def sign(secret: str, body: bytes) -> str:
    """The X-Retrospec-Signature value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook(
    notice: Notice,
    *,
    fmt: str,
    rule_id: int,
    secret: str | None,
    delivery_id: str,
    sent_at: int,
) -> Rendered:
    """The body and headers of one webhook POST."""
    if fmt == "slack":
        doc = slack(notice, rule_id)
    elif fmt == "discord":
        doc = discord(notice, rule_id)
    else:
        doc = json_document(notice, rule_id, delivery_id, sent_at)
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    event = "digest" if isinstance(notice, Digest) else notice.event
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"RetroSpec/{__version__}",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return Rendered(subject=notice.headline, text="", body=body, headers=headers)
