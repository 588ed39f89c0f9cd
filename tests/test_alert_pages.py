"""The /alerts dashboard page in process: behind login, CSRF on every POST, adding rules with
clear errors and nothing stored on bad input, the signing secret shown once, a test send to a
real receiver, removal, and the delivery log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from retrospec import tokens
from retrospec.alerts import rules
from retrospec.app import create_app
from retrospec.settings import Settings
from retrospec.storage.db import connect
from tests.support.accounts import add_user, login, write
from tests.support.data import add_site
from tests.support.receivers import HttpReceiver

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


@pytest.fixture
def client(settings: Settings) -> Iterator[tuple[TestClient[Any], dict[str, str]]]:
    add_site(settings, "shop")
    add_user(settings)
    with TestClient(create_app(settings, start_jobs=False)) as c:
        csrf = login(c)
        yield c, {"HX-Request": "true", "X-CSRF-Token": csrf}


def stored_rules(settings: Settings) -> list[rules.AlertRule]:
    conn = connect(settings.db_path, readonly=True)
    try:
        return rules.list_rules(conn)
    finally:
        conn.close()


def test_alerts_page_is_behind_login_and_posts_need_csrf(settings: Settings) -> None:
    add_user(settings)
    with TestClient(create_app(settings, start_jobs=False)) as anon:
        page = anon.get("/alerts", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/alerts"
        post = anon.post("/alerts/email", data={"to": "a@b.example"}, follow_redirects=False)
        assert post.status_code == 303
        _, token = write(settings, lambda c: tokens.create_token(c, "t", "write"))  # type: ignore[misc]
        with_token = anon.get(
            "/alerts", headers={"Authorization": f"Bearer {token}"}, follow_redirects=False
        )
        assert with_token.status_code == 303  # a token never opens the dashboard
        login(anon)
        page = anon.get("/alerts")
        assert page.status_code == 200 and 'aria-current="page">Alerts' in page.text
        assert not INLINE_SCRIPT.search(page.text)
        forged = anon.post("/alerts/email", data={"to": "a@b.example", "on": "promoted"})
        assert forged.status_code == 403
    assert stored_rules(settings) == []


def test_add_email_and_webhook_rules(
    settings: Settings, client: tuple[TestClient[Any], dict[str, str]]
) -> None:
    c, headers = client
    bad = c.post("/alerts/email", data={"to": "nope", "on": ["promoted"]}, headers=headers)
    assert bad.status_code == 400 and "not an e-mail address" in bad.text
    assert 'value="nope"' in bad.text  # the form keeps what was typed
    bad_url = c.post(
        "/alerts/webhook", data={"url": "ftp://x.example/h", "format": "slack"}, headers=headers
    )
    assert bad_url.status_code == 400 and "https:// or http://" in bad_url.text
    no_events = c.post("/alerts/email", data={"to": "ops@example.com"}, headers=headers)
    assert no_events.status_code == 400 and "at least one event" in no_events.text
    assert stored_rules(settings) == []

    added = c.post(
        "/alerts/email",
        data={"to": "ops@example.com", "site": "", "on": ["promoted", "regression"]},
        headers=headers,
    )
    assert added.status_code == 200 and added.text.startswith('<div id="alert-list"')
    assert "Added rule" in added.text and "Set smtp_url" in added.text
    site_id = add_site(settings, "blog")[0].id
    hooked = c.post(
        "/alerts/webhook",
        data={"url": "https://hooks.example.com/services/T0/B0/secretpart", "format": "json",
              "site": site_id, "on": ["spike"]},
        headers=headers,
    )  # fmt: skip
    assert hooked.status_code == 200
    secret = re.search(r'id="webhook-secret">(whsec_[^<]+)<', hooked.text)
    assert secret, hooked.text
    (email_rule, hook_rule) = stored_rules(settings)
    assert email_rule.events == ("promoted", "regression") and email_rule.site_id is None
    assert hook_rule.secret == secret.group(1) and hook_rule.site_id == site_id
    assert hook_rule.events == ("spike",)
    again = c.get("/alerts").text
    assert secret.group(1) not in again and "secretpart" not in again  # shown once; URL in part
    assert "ops@example.com" in again


def test_send_test_and_remove(
    settings: Settings, client: tuple[TestClient[Any], dict[str, str]], hook: HttpReceiver
) -> None:
    c, headers = client
    c.post(
        "/alerts/webhook",
        data={"url": hook.url, "format": "discord", "on": ["promoted"]},
        headers=headers,
    )
    (rule,) = stored_rules(settings)
    sent = c.post(f"/alerts/{rule.id}/test", headers=headers)
    assert sent.status_code == 200 and "Test sent" in sent.text
    (hit,) = hook.wait(1)
    assert hit.json()["content"].startswith("Test alert from RetroSpec")
    assert "test" in sent.text and "sent" in sent.text  # the delivery log shows it
    hook.status = 500
    failed = c.post(f"/alerts/{rule.id}/test", headers=headers)
    assert failed.status_code == 200 and "Test not delivered: HTTP 500" in failed.text
    assert c.post("/alerts/999/test", headers=headers).status_code == 404
    assert c.post("/alerts/999/remove", headers=headers).status_code == 404
    removed = c.post(f"/alerts/{rule.id}/remove", headers=headers)
    assert removed.status_code == 200 and "Removed rule" in removed.text
    assert stored_rules(settings) == []
    huge = c.post(f"/alerts/{2**70}/remove", headers=headers)
    assert huge.status_code in (400, 404)
