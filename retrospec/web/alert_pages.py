"""/alerts: add e-mail and webhook rules, send a test, remove a rule, see recent deliveries."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.params import FromPath

from retrospec import sites
from retrospec.alerts import outbox, rules
from retrospec.alerts.channels import Outcome
from retrospec.alerts.deliver import send_test
from retrospec.errors import BadRequest, NotFound
from retrospec.storage.db import reading
from retrospec.web.access import runtime
from retrospec.web.render import page

LOG_ROWS = 20
EMPTY_FORM: dict[str, Any] = {
    "kind": "",
    "to": "",
    "url": "",
    "format": "slack",
    "site": "",
    "on": [],
}


@dataclass(frozen=True, slots=True)
class AlertsView:
    """What the page shows."""

    rules: list[rules.AlertRule]
    sites: list[sites.Site]
    deliveries: list[outbox.Delivery]


def _view(conn: sqlite3.Connection) -> AlertsView:
    return AlertsView(
        rules=rules.list_rules(conn),
        sites=sites.list_sites(conn),
        deliveries=outbox.list_deliveries(conn, limit=LOG_ROWS),
    )


def _smtp_host(smtp_url: str) -> str | None:
    return urlsplit(smtp_url).hostname if smtp_url else None


async def _page(
    request: Request[Any, Any, Any],
    *,
    error: str = "",
    notice: str = "",
    secret: str | None = None,
    form: dict[str, Any] | None = None,
    results: dict[int, Outcome] | None = None,
    status_code: int = 200,
) -> Response[str]:
    rt = runtime(request)
    view = await rt.reads.run(_view)
    context = {
        "section": "alerts",
        "view": view,
        "events": rules.EVENTS,
        "formats": rules.FORMATS,
        "smtp_host": _smtp_host(rt.settings.smtp_url),
        "error": error,
        "notice": notice,
        "secret": secret,
        "form": {**EMPTY_FORM, **(form or {})},
        "results": results or {},
    }
    return page(
        request, "alerts.html", context, fragment="_alert_list.html", status_code=status_code
    )


@get("/alerts", name="alerts")
async def alert_list(request: Request[Any, Any, Any]) -> Response[str]:
    """Every rule, the forms to add one, and the newest deliveries."""
    return await _page(request)


def _form_events(values: list[Any]) -> tuple[str, ...]:
    return rules.parse_events([str(v) for v in values])


@post("/alerts/email", status_code=200)
async def alert_add_email(request: Request[Any, Any, Any]) -> Response[str]:
    """Add an e-mail rule."""
    rt = runtime(request)
    form = await request.form()
    to = str(form.get("to") or "")
    site = str(form.get("site") or "") or None
    picked = form.getall("on") if "on" in form else []
    try:
        events = _form_events(picked)
        rule = await rt.writer.run(lambda c: rules.add_email_rule(c, to, site=site, events=events))
    except (BadRequest, NotFound) as exc:
        values = {"to": to, "site": site or "", "on": [str(v) for v in picked], "kind": "email"}
        return await _page(request, error=exc.message, form=values, status_code=400)
    note = f"Added rule {rule.id}: {rule.description}."
    if not rt.settings.smtp_url:
        note += " Set smtp_url before e-mails can go out; until then they wait."
    return await _page(request, notice=note)


@post("/alerts/webhook", status_code=200)
async def alert_add_webhook(request: Request[Any, Any, Any]) -> Response[str]:
    """Add a webhook rule (a JSON webhook's signing secret is shown here, once)."""
    rt = runtime(request)
    form = await request.form()
    url = str(form.get("url") or "")
    fmt = str(form.get("format") or "json")
    secret = str(form.get("secret") or "") or None
    site = str(form.get("site") or "") or None
    picked = form.getall("on") if "on" in form else []
    try:
        rules.validate_webhook_url(url)
        events = _form_events(picked)
        rule = await rt.writer.run(
            lambda c: rules.add_webhook_rule(
                c, url, fmt=fmt, secret=secret, site=site, events=events
            )
        )
    except (BadRequest, NotFound) as exc:
        values = {
            "url": url,
            "format": fmt,
            "site": site or "",
            "on": [str(v) for v in picked],
            "kind": "webhook",
        }
        return await _page(request, error=exc.message, form=values, status_code=400)
    return await _page(
        request, notice=f"Added rule {rule.id}: {rule.description}.", secret=rule.secret
    )


@post("/alerts/{rule_id:int}/remove", status_code=200)
async def alert_remove(request: Request[Any, Any, Any], rule_id: FromPath[int]) -> Response[str]:
    """Delete a rule; its queued alerts go with it."""
    rt = runtime(request)
    rule = await rt.writer.run(lambda c: rules.remove_rule(c, rule_id))
    return await _page(request, notice=f"Removed rule {rule.id} ({rule.description}).")


@post("/alerts/{rule_id:int}/test", status_code=200)
async def alert_test(request: Request[Any, Any, Any], rule_id: FromPath[int]) -> Response[str]:
    """Send a sample through a rule now (in a thread: SMTP and HTTP block) and show how it went."""
    rt = runtime(request)
    rule = await rt.reads.run(rules.get_rule, rule_id)

    def work() -> Outcome:
        with reading(rt.settings.database) as conn:
            return send_test(conn, rt.settings, rule, rt.writer.call)

    outcome = await asyncio.to_thread(work)
    return await _page(request, results={rule.id: outcome})


HANDLERS = [alert_list, alert_add_email, alert_add_webhook, alert_remove, alert_test]
