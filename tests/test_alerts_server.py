"""Alerts end to end against a real `retrospec serve`: chromium sessions hitting a bug, a real
SMTP server and a real webhook receiver; a SIGKILL between promotion and delivery."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrospec import tokens
from retrospec.alerts import rules
from tests.support.accounts import PASSWORD, add_user, write
from tests.support.browser import query, wait_for
from tests.support.data import add_site
from tests.support.envelopes import envelope, error
from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.servers import ServerProcess, StaticSite, free_port, server_env

pytestmark = [pytest.mark.slow]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout</title>
<script src="{base}/sdk/retrospec.js"></script>
<script>
  window.rs = Retrospec.initRetrospec({{
    apiBaseUrl: "{base}", apiKey: "{key}", release: "shop@2.0.1", flushIntervalMs: 400
  }});
</script></head>
<body><h1>Checkout</h1><button id="pay" type="button">Pay now</button>
<script>
  function applyCoupon(basket) {{ return basket.price * 0.9; }}
  document.getElementById("pay").addEventListener("click", function () {{
    applyCoupon(undefined);
  }});
</script></body></html>
"""


def start_server(data: Path, port: int, **settings: Any) -> ServerProcess:
    env = server_env(data, **{k: str(v) for k, v in settings.items()})
    server = ServerProcess(data_dir=data, port=port, env=env)
    server.start()
    return server


def visit_and_fail(browser: Any, url: str) -> None:
    """One browser session: open the page, click Pay now (it throws), flush."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function("window.rs && window.Retrospec")
        page.wait_for_timeout(500)
        page.click("#pay")
        page.wait_for_timeout(300)
        page.evaluate("window.rs.flush()")
    finally:
        context.close()


@contextlib.contextmanager
def signed_in(base: str) -> Iterator[httpx.Client]:
    """An httpx client logged in to the dashboard as alice."""
    with httpx.Client(base_url=base) as client:
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token
        done = client.post(
            "/login",
            data={"csrf_token": token.group(1), "username": "alice", "password": PASSWORD},
        )
        assert done.status_code == 303, done.text
        yield client


def links(text: str, base: str) -> list[str]:
    return re.findall(re.escape(base) + r"/[^\s\"'<>)\]|]+", text)


@pytest.mark.browser
def test_two_sdk_sessions_hitting_one_bug_send_one_email_and_one_webhook(
    tmp_path: Path,
    browser: Any,
    static_site: StaticSite,
    smtp: SmtpReceiver,
    hook: HttpReceiver,
) -> None:
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(
        data,
        port,
        public_url=base,
        smtp_url=smtp.url,
        smtp_from="retrospec@shop.example",
        cluster_interval_seconds=0.5,
        replay_interval_seconds=0.5,
        alert_interval_seconds=0.5,
        alert_delay_seconds=3,
        demo="false",
    )
    try:
        settings = server.settings
        _, key = add_site(settings, "shop", [static_site.origin])
        add_user(settings)
        write(settings, lambda c: rules.add_email_rule(c, "dev@shop.example"))
        write(settings, lambda c: rules.add_webhook_rule(c, hook.url, secret="hook-secret-1"))
        _, api_token = write(settings, lambda c: tokens.create_token(c, "ci", "write"))  # type: ignore[misc]
        url = static_site.write("shop.html", PAGE.format(base=base, key=key))
        visit_and_fail(browser, url)
        visit_and_fail(browser, url)

        (mail,) = smtp.wait(1, timeout=40)
        (hit,) = hook.wait(1, timeout=40)
        issue_id = query(settings.db_path, "SELECT id FROM clusters WHERE status = 'open'")[0][0]
        body = mail.get_content()
        assert mail["Subject"].startswith("[RetroSpec] New issue in shop: TypeError")
        assert "Failures: 2 · Sessions: 2" in body and "First release: shop@2.0.1" in body
        assert 'clicked button "Pay now"' in body  # the steps before the failure
        doc = hit.json()
        assert doc["event"] == "promoted" and doc["issue"]["id"] == issue_id
        assert doc["first_release"] == "shop@2.0.1"
        assert any(s["label"] == 'button "Pay now"' for s in doc["steps"])
        # Both carry absolute links that work: the issue page and the replay at the failure.
        mail_links = links(body, base)
        assert f"{base}/issues/{issue_id}" in mail_links
        replay = [u for u in mail_links if "/sessions/" in u]
        assert replay and re.search(r"\?t=\d+$", replay[0])
        assert doc["issue_url"] == f"{base}/issues/{issue_id}" and doc["replay_url"] == replay[0]
        with signed_in(base) as client:
            issue_page = client.get(f"/issues/{issue_id}")
            assert issue_page.status_code == 200 and "applyCoupon" in issue_page.text
            replay_page = client.get(replay[0].removeprefix(base))
            assert replay_page.status_code == 200 and "Pay now" in replay_page.text

        # More failures of the same issue: nothing more.
        visit_and_fail(browser, url)
        wait_for(
            lambda: (
                query(
                    settings.db_path, "SELECT failure_count FROM clusters WHERE id = ?", issue_id
                )[0][0]
                == 3
            ),
            what="the third failure clustered",
        )
        time.sleep(5)  # the deliver job runs every 0.5 s; nothing is due
        assert len(smtp.messages) == 1 and len(hook.hits) == 1

        # Resolved through the API, then a new failure: one regression alert per channel.
        resolved = httpx.post(
            f"{base}/api/v1/issues/{issue_id}/resolve",
            headers={"Authorization": f"Bearer {api_token}"},
        )
        assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
        visit_and_fail(browser, url)
        mails = smtp.wait(2, timeout=40)
        hits = hook.wait(2, timeout=40)
        assert mails[1]["Subject"].startswith("[RetroSpec] Regression in shop")
        assert hits[1].json()["event"] == "regression"
        time.sleep(3)
        assert len(smtp.messages) == 2 and len(hook.hits) == 2
        assert smtp.envelopes[0] == ("retrospec@shop.example", ["dev@shop.example"])
    finally:
        server.stop()


def test_sigkill_between_promotion_and_delivery_delivers_once_after_restart(
    tmp_path: Path, smtp: SmtpReceiver, hook: HttpReceiver
) -> None:
    data = tmp_path / "data"
    port = free_port()
    common = {
        "public_url": f"http://127.0.0.1:{port}",
        "smtp_url": smtp.url,
        "cluster_interval_seconds": 0.3,
        "alert_interval_seconds": 0.3,
        "demo": "false",
    }
    # First life: alerts are held for a minute, so the kill lands after the promotion (the
    # outbox rows are committed) and before any delivery.
    server = start_server(data, port, alert_delay_seconds=60, **common)
    settings = server.settings
    _, key = add_site(settings, "shop")
    write(settings, lambda c: rules.add_email_rule(c, "dev@shop.example"))
    write(settings, lambda c: rules.add_webhook_rule(c, hook.url, fmt="slack"))
    for n in range(2):
        session = {"id": str(uuid.uuid4()), "url": "https://shop.example/cart", "release": "9"}
        body = envelope(session, 0, failures=[error()])
        answer = httpx.post(f"{server.base_url}/api/v1/ingest?key={key}", content=json.dumps(body))
        assert answer.status_code == 202, (n, answer.text)
    pending = wait_for(
        lambda: query(settings.db_path, "SELECT status, attempts FROM alert_outbox ORDER BY id"),
        what="the promotion's outbox rows",
    )
    assert [tuple(r) for r in pending] == [("pending", 0), ("pending", 0)]
    server.kill()
    assert smtp.messages == [] and hook.hits == []

    # Second life, same data: each alert goes out exactly once.
    server = start_server(data, port, alert_delay_seconds=0, **common)
    try:
        (mail,) = smtp.wait(1, timeout=30)
        (hit,) = hook.wait(1, timeout=30)
        assert "New issue in shop" in mail["Subject"]
        assert hit.json()["text"].startswith("New issue in shop")
        time.sleep(3)
        assert len(smtp.messages) == 1 and len(hook.hits) == 1
        done = query(settings.db_path, "SELECT status, attempts FROM alert_outbox ORDER BY id")
        assert [tuple(r) for r in done] == [("sent", 1), ("sent", 1)]
        assert server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()
