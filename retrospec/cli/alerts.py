"""`retrospec alerts ...`: alert rules (e-mail, webhooks), a test send, and the delivery log.

Rules are rows in the same database the server reads; a rule added here applies to the next
promotion, regression or spike the server sees. `alerts test` sends from this process, now.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from retrospec import console
from retrospec.cli.common import JsonOpt, SiteOpt, ago, fit_table, load, require_db, with_db
from retrospec.clock import iso, now_ms

if TYPE_CHECKING:
    from retrospec.alerts.outbox import Delivery
    from retrospec.alerts.rules import AlertRule

alerts_app = typer.Typer(
    help="Alerts: e-mail and webhooks on new issues, regressions and spikes.",
    no_args_is_help=True,
)
add_app = typer.Typer(help="Add an alert rule.", no_args_is_help=True)

RuleId = Annotated[int, typer.Argument(help="Rule id, as `retrospec alerts list` shows it.")]
OnOpt = Annotated[
    str | None,
    typer.Option(
        "--on", help="Events, comma-separated: promoted,regression,spike [default: all three]."
    ),
]
SmtpUrlOpt = Annotated[
    str | None, typer.Option("--smtp-url", help="SMTP server (else the smtp_url setting).")
]
SmtpFromOpt = Annotated[
    str | None, typer.Option("--smtp-from", help="Sender address (else the smtp_from setting).")
]


class WebhookFormat(StrEnum):
    """Payload shapes a webhook can take."""

    slack = "slack"
    discord = "discord"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add `alerts` to the root CLI."""
    alerts_app.add_typer(add_app, name="add")
    app.add_typer(alerts_app, name="alerts")


def rule_json(rule: AlertRule) -> dict[str, Any]:
    """One rule in `alerts list --json` (a webhook URL is shown only in part)."""
    return {
        "id": rule.id,
        "channel": rule.channel,
        "format": rule.format,
        "target": rule.target_label,
        "site": None if rule.site_id is None else {"id": rule.site_id, "name": rule.site_name},
        "events": list(rule.events),
        "signed": rule.secret is not None,
        "created_at": iso(rule.created_at),
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    """One row of `alerts log --json`."""
    return {
        "id": d.id,
        "at": iso(d.at),
        "rule_id": d.rule_id,
        "issue_id": d.cluster_id,
        "event": d.event,
        "attempt": d.attempt,
        "outcome": d.outcome,
        "detail": d.detail,
        "duration_ms": d.duration_ms,
    }


def _scope(rule: AlertRule) -> str:
    return "all sites" if rule.site_id is None else f"site {rule.site_name}"


def _added(rule: AlertRule, secret: str | None, json_out: bool) -> None:
    settings = load().settings
    if json_out:
        console.print_json({**rule_json(rule), "secret": secret})
    else:
        console.success(
            f"added alert rule {rule.id}: {rule.description} for {_scope(rule)} "
            f"on {', '.join(rule.events)}"
        )
        if secret:
            console.print_text(f"signing secret (X-Retrospec-Signature): {secret}")
            console.print_text("keep it: `alerts list` does not show it again")
    if rule.channel == "email" and not settings.smtp_url:
        console.warn(
            "smtp_url is not set: e-mails wait (and are retried) until it is; set it in "
            "retrospec.toml or RETROSPEC_SMTP_URL, then try `retrospec alerts test "
            f"{rule.id}`"
        )


@add_app.command("email")
def add_email(
    to: Annotated[str, typer.Option("--to", help="Recipient address.")],
    site: SiteOpt = None,
    on: OnOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """E-mail ADDR about new issues, regressions and spikes (smtp_url must be set)."""
    from retrospec.alerts import rules

    events = rules.parse_events(on)
    address = rules.validate_address(to)
    rule = with_db(
        load(), lambda c: rules.add_email_rule(c, address, site=site, events=events), write=True
    )
    _added(rule, None, json_out)


@add_app.command("webhook")
def add_webhook(
    url: Annotated[str, typer.Option("--url", help="The webhook's http(s) URL.")],
    fmt: Annotated[
        WebhookFormat, typer.Option("--format", help="Payload: slack, discord or signed json.")
    ] = WebhookFormat.json,
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="HMAC-SHA256 signing secret [json: generated if omitted]."),
    ] = None,
    site: SiteOpt = None,
    on: OnOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """POST alerts to a Slack or Discord incoming webhook, or as signed JSON to any URL."""
    from retrospec.alerts import rules

    events = rules.parse_events(on)
    clean = rules.validate_webhook_url(url)
    rule = with_db(
        load(),
        lambda c: rules.add_webhook_rule(
            c, clean, fmt=fmt.value, secret=secret, site=site, events=events
        ),
        write=True,
    )
    _added(rule, rule.secret, json_out)


@alerts_app.command("list")
def alerts_list(json_out: JsonOpt = False) -> None:
    """Every alert rule."""
    from retrospec.alerts import rules

    loaded = load()
    require_db(loaded.settings)
    found = with_db(loaded, rules.list_rules)
    if json_out:
        console.print_json({"schema_version": 1, "rules": [rule_json(r) for r in found]})
        return
    fit_table(
        [
            ("id", {"justify": "right"}),
            ("channel", {}),
            ("target", {}),
            ("site", {}),
            ("events", {}),
        ],
        [
            (
                r.id,
                r.format if r.channel == "webhook" else "email",
                r.target_label,
                r.site_name or "all",
                ",".join(r.events),
            )
            for r in found
        ],
        flex="target",
        empty="no alert rules; add one with `retrospec alerts add email --to ADDR`",
    )


@alerts_app.command("remove")
def alerts_remove(rule_id: RuleId) -> None:
    """Delete a rule (its queued alerts go with it; its log stays)."""
    from retrospec.alerts import rules

    loaded = load()
    require_db(loaded.settings)
    rule = with_db(loaded, lambda c: rules.remove_rule(c, rule_id), write=True)
    console.success(f"removed alert rule {rule.id} ({rule.description})")


@alerts_app.command("test")
def alerts_test(
    rule_id: RuleId,
    smtp_url: SmtpUrlOpt = None,
    smtp_from: SmtpFromOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send a sample through a rule now and print the outcome (exit 1 if it failed)."""
    from retrospec.alerts import rules
    from retrospec.alerts.deliver import send_test
    from retrospec.errors import RetrospecError
    from retrospec.storage.db import DirectWriter, connect

    settings = load(smtp_url=smtp_url, smtp_from=smtp_from).settings
    require_db(settings)
    conn = connect(settings.database, synchronous=settings.sqlite_synchronous)
    try:
        rule = rules.get_rule(conn, rule_id)
        # The send happens outside any transaction; only the log line is written.
        outcome = send_test(conn, settings, rule, DirectWriter(conn).call)
    finally:
        conn.close()
    if json_out:
        console.print_json(
            {
                "rule_id": rule.id,
                "outcome": outcome.kind,
                "detail": outcome.detail,
                "duration_ms": outcome.duration_ms,
            }
        )
    elif outcome.kind == "sent":
        console.success(f"sent a test alert via {rule.description}: {outcome.detail}")
    if outcome.kind != "sent":
        raise RetrospecError(f"test alert via {rule.description} not delivered: {outcome.detail}")


@alerts_app.command("log")
def alerts_log(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N.")] = 50,
    rule: Annotated[int | None, typer.Option("--rule", help="Only this rule's deliveries.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Delivery attempts, newest first: when, rule, issue, attempt, outcome."""
    from retrospec.alerts.outbox import list_deliveries

    loaded = load()
    require_db(loaded.settings)
    rows = with_db(loaded, lambda c: list_deliveries(c, limit=limit, rule_id=rule))
    if json_out:
        console.print_json({"schema_version": 1, "deliveries": [delivery_json(d) for d in rows]})
        return
    now = now_ms()
    fit_table(
        [
            ("when", {}),
            ("rule", {"justify": "right"}),
            ("issue", {"justify": "right"}),
            ("event", {}),
            ("try", {"justify": "right"}),
            ("outcome", {}),
            ("detail", {}),
        ],
        [
            (
                ago(d.at, now),
                d.rule_id,
                d.cluster_id or "",
                d.event,
                d.attempt,
                d.outcome,
                d.detail or "",
            )
            for d in rows
        ],
        flex="detail",
        empty="no deliveries yet",
    )
