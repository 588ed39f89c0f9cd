"""The dashboard through a real `retrospec serve`, driven the way an attacker would drive it:
forged Host headers, hostile next= values, ids past 64 bits, control and bidi characters in
failure messages, and /healthz asked without and with its token."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from retrospec.storage.migrations import latest_version
from tests.support.accounts import add_user, form_token, login
from tests.support.browser import query, wait_for
from tests.support.data import add_site
from tests.support.envelopes import cart_batch
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow

MESSAGE = "Pay failed \x1b[2J for \u202egnp.exe\u202c cc @everyone #42"


@dataclass
class World:
    server: ServerProcess
    client: httpx.Client
    csrf: str
    issue_id: int


@pytest.fixture
def world(serve: Callable[..., ServerProcess]) -> Iterator[World]:
    server = serve(demo="false", health_token="hc-secret", cluster_interval_seconds="0.5")
    _, key = add_site(server.settings, "shop")
    add_user(server.settings)
    for _ in range(2):
        body = cart_batch(str(uuid.uuid4()), message=MESSAGE)
        response = httpx.post(f"{server.base_url}/api/v1/ingest", params={"key": key}, json=body)
        assert response.status_code == 202
    db = server.settings.db_path
    (row,) = wait_for(
        lambda: query(db, "SELECT id FROM clusters WHERE status = 'open'"), what="the issue"
    )
    with httpx.Client(base_url=server.base_url) as client:
        csrf = login(client)  # type: ignore[arg-type]
        yield World(server, client, csrf, int(row[0]))


def test_links_never_come_from_the_host_header(world: World) -> None:
    evil = {"host": "evil.example"}
    base = world.server.base_url
    for path in ("/sites", f"/issues/{world.issue_id}"):
        page = world.client.get(path, headers=evil)
        assert page.status_code == 200, path
        assert "evil.example" not in page.text, path
    assert f"{base}/sdk/retrospec.js" in world.client.get("/sites", headers=evil).text
    assert (
        f"{base}/issues/{world.issue_id}"
        in world.client.get(f"/issues/{world.issue_id}", headers=evil).text
    )


def test_hostile_next_values_redirect_safely(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url) as fresh:
        for nxt, location in (
            ("/issues/é?q=ü", "/issues/%C3%A9?q=%C3%BC"),
            ("/sites\r\nSet-Cookie: pwned=1", "/"),
            ("/x\x85y", "/"),
            ("//evil.example/", "/"),
        ):
            token = form_token(fresh)  # type: ignore[arg-type]
            response = fresh.post(
                "/login",
                data={"csrf_token": token, "username": "alice", "password": "correct horse battery",
                      "next": nxt},
                follow_redirects=False,
            )  # fmt: skip
            assert response.status_code == 303, (nxt, response.text)
            assert response.headers["location"] == location
            assert "pwned" not in response.headers.get("set-cookie", "")
            fresh.cookies.clear()
        # GET /login?next=... renders the form with the value carried along, not a 500.
        form = fresh.get("/login", params={"next": "/issues/€"})
        assert form.status_code == 200


def test_ids_past_64_bits_are_not_found(world: World) -> None:
    huge = 2**70
    assert world.client.get(f"/issues/{huge}").status_code == 404
    posted = world.client.post(
        f"/issues/{huge}/status", data={"action": "resolve", "csrf_token": world.csrf}
    )
    assert posted.status_code == 404
    assert world.client.get(f"/issues/{-1}").status_code == 404
    assert "Traceback" not in world.server.log()


def test_control_and_bidi_characters_are_neutralised_in_pages(world: World) -> None:
    page = world.client.get(f"/issues/{world.issue_id}").text
    assert "\x1b" not in page
    # The override only reverses the message itself: it is wrapped in an isolate and closed.
    assert "\u202egnp.exe" in page  # the characters are kept (shown as the sender wrote them)
    start = page.index("\u202egnp.exe")
    assert "\u2068" in page[start - 200 : start]  # FSI before
    assert "\u2069" in page[start : start + 200]  # PDI after
    # The Markdown report on the page neutralises mentions.
    assert "@&amp;#8203;everyone" in page
    listing = world.client.get("/").text
    assert "\x1b" not in listing and "\u2068" in listing


def test_healthz_says_ok_or_degraded_and_details_need_the_token(world: World) -> None:
    url = f"{world.server.base_url}/healthz"
    assert httpx.get(url).json() == {"status": "ok"}
    for header in ("Bearer wrong", "hc-secret", "Basic hc-secret"):
        assert httpx.get(url, headers={"authorization": header}).json() == {"status": "ok"}
    details = httpx.get(url, headers={"authorization": "Bearer hc-secret"}).json()
    assert details["status"] == "ok" and details["version"]
    assert details["schema"] == latest_version()
    assert isinstance(details["disk"]["free_bytes"], int) and details["problems"] == []
