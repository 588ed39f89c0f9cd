"""The JSON API in process: tokens and scopes, the cookie/token separation, the same documents as
the CLI's --json, cursor pagination, and JSON errors for bad input (the fuzz run against a real
server is in tests/test_api_fuzz.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from retrospec import tokens
from retrospec.app import create_app
from retrospec.storage.db import DirectWriter, connect
from retrospec.web import api_schema
from tests.support.accounts import add_user, login
from tests.support.envelopes import cart_batch
from tests.support.shop import Shop, ingest, invoke, make_shop, run_jobs


def new_token(shop: Shop, name: str, scope: str = "read") -> str:
    conn = connect(shop.settings.db_path)
    try:
        _, token = DirectWriter(conn).call(lambda c: tokens.create_token(c, name, scope))
    finally:
        conn.close()
    return token


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    return make_shop(tmp_path_factory.mktemp("api") / "data", n=3)


@pytest.fixture
def client(shop: Shop) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(shop.settings, start_jobs=False)) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_unknown_token_and_revoked_token_get_401(
    shop: Shop, client: TestClient[Any]
) -> None:
    missing = client.get("/api/v1/issues")
    assert missing.status_code == 401
    assert "Bearer" in missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for header in ("Bearer rst_nope", "Basic dXNlcjpwdw==", "Bearer", "rst_abc"):
        r = client.get("/api/v1/issues", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert set(r.json()) == {"error"}
    token = new_token(shop, "soon-revoked")
    assert client.get("/api/v1/issues", headers=auth(token)).status_code == 200
    result = invoke(shop, "tokens", "revoke", "soon-revoked")
    assert result.exit_code == 0, result.output
    revoked = client.get("/api/v1/issues", headers=auth(token))  # at once, no cache
    assert revoked.status_code == 401 and revoked.json() == {"error": "unknown or revoked token"}


def test_the_dashboard_cookie_never_authorises_the_api_and_a_token_never_opens_the_dashboard(
    shop: Shop, client: TestClient[Any]
) -> None:
    add_user(shop.settings, f"api-{uuid.uuid4().hex[:6]}")
    name = json.loads(invoke(shop, "users", "list", "--json").stdout)[-1]["username"]
    csrf = login(client, name)
    assert client.get("/").status_code == 200  # signed in to the dashboard
    api = client.get("/api/v1/issues")
    assert api.status_code == 401
    write = client.post("/api/v1/issues/1/resolve", headers={"X-CSRF-Token": csrf})
    assert write.status_code == 401
    token = new_token(shop, f"dash-{uuid.uuid4().hex[:6]}", "write")
    with TestClient(create_app(shop.settings, start_jobs=False)) as fresh:
        page = fresh.get("/", headers=auth(token), follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert fresh.get("/sites", headers=auth(token), follow_redirects=False).status_code == 303


def test_scopes_read_token_403_on_write_routes_write_token_changes_status(
    tmp_path: Path,
) -> None:
    shop = make_shop(tmp_path / "data", n=2)
    reader, writer = new_token(shop, "reader"), new_token(shop, "writer", "write")
    with TestClient(create_app(shop.settings, start_jobs=False)) as client:
        denied = client.post("/api/v1/issues/1/resolve", headers=auth(reader))
        assert denied.status_code == 403 and "read-only" in denied.json()["error"]
        assert client.get("/api/v1/issues/1", headers=auth(reader)).json()["status"] == "open"
        done = client.post("/api/v1/issues/1/resolve", headers=auth(writer))
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "resolved" and done.json()["id"] == 1
        again = client.post("/api/v1/issues/1/resolve", headers=auth(writer))
        assert again.status_code == 409 and "already resolved" in again.json()["error"]
        assert client.post("/api/v1/issues/1/reopen", headers=auth(writer)).json()["status"] == (
            "open"
        )
        assert client.post("/api/v1/issues/1/ignore", headers=auth(writer)).status_code == 200
        assert client.post("/api/v1/issues/99/ignore", headers=auth(writer)).status_code == 404
        history = client.get("/api/v1/issues/1", headers=auth(reader)).json()["history"]
    assert [h["actor"] for h in history[-3:]] == ["token:writer"] * 3
    listed = json.loads(invoke(shop, "tokens", "list", "--json").stdout)["tokens"]
    used = {t["name"]: t["last_used_at"] for t in listed}
    assert used["reader"] is not None and used["writer"] is not None
    assert "rst_" not in json.dumps(listed).replace('"prefix": "rst_', "")


def test_documents_are_the_clis(shop: Shop, client: TestClient[Any]) -> None:
    token = new_token(shop, f"docs-{uuid.uuid4().hex[:6]}")
    base = shop.settings.base_url
    listed = client.get("/api/v1/issues?status=all", headers=auth(token))
    assert listed.status_code == 200
    cli_list = json.loads(invoke(shop, "issues", "list", "--status", "all", "--json").stdout)
    assert listed.json() == {**cli_list, "next_cursor": None}
    assert listed.json()["issues"][0]["url"] == f"{base}/issues/1"
    shown = client.get("/api/v1/issues/1", headers=auth(token)).json()
    assert shown == json.loads(invoke(shop, "issues", "show", "1", "--json").stdout)
    sessions = client.get("/api/v1/sessions?with_failures=true", headers=auth(token)).json()
    cli_sessions = json.loads(invoke(shop, "sessions", "list", "--with-failures", "--json").stdout)
    assert sessions == {**cli_sessions, "next_cursor": None}
    releases = client.get("/api/v1/releases", headers=auth(token)).json()
    (release,) = releases["releases"]
    assert release["release"] == "1.4.2" and release["site"]["name"] == "shop"
    assert release["sessions"] == 3 and release["failures"] == 3 and release["new_issues"] == 1
    assert release["first_seen"] <= release["last_seen"]
    assert release["regressions"] == 0 and release["has_maps"] is False
    served = client.get("/api/v1/openapi.json")  # no token needed
    assert served.status_code == 200 and served.json() == api_schema.document()


def test_cursor_pagination_walks_everything_once(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "data", n=2)
    # Four more bugs, each in two sessions, so the list has five issues.
    more = [
        cart_batch(str(uuid.uuid4()), user=f"u{n}-{i}", message=f"{word} is not a function")
        for n, word in enumerate(("alpha", "beta", "gamma", "delta"))
        for i in range(2)
    ]
    ingest(shop.settings, shop.key, more)
    run_jobs(shop.settings, "cluster")
    token = new_token(shop, "pager")
    with TestClient(create_app(shop.settings, start_jobs=False)) as client:
        walks = (("/api/v1/issues", "issues", 5), ("/api/v1/sessions", "sessions", 10))
        for path, key, size in walks:
            seen: list[Any] = []
            cursor = None
            pages = 0
            while True:
                url = f"{path}?limit=2" + (f"&cursor={cursor}" if cursor else "")
                doc = client.get(url, headers=auth(token)).json()
                assert doc["total"] == size
                seen += [item["id"] for item in doc[key]]
                pages += 1
                cursor = doc["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == size == len(set(seen)), (path, seen)
            assert pages == (size + 1) // 2 + (1 if size % 2 == 0 else 0)
            whole = client.get(f"{path}?limit=100", headers=auth(token)).json()
            assert [item["id"] for item in whole[key]] == seen
        releases = client.get("/api/v1/releases?limit=1", headers=auth(token)).json()
        assert releases["next_cursor"] is None and releases["total"] == 1


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/v1/issues?limit=0", 400, "limit"),
        ("/api/v1/issues?limit=1001", 400, "limit"),
        ("/api/v1/issues?limit=ten", 400, "limit"),
        ("/api/v1/issues?status=bogus", 400, "status must be one of"),
        ("/api/v1/issues?cursor=not-a-cursor", 400, "cursor"),
        ("/api/v1/issues?cursor=WzEsMiwzXQ", 400, "cursor"),  # [1,2,3]
        ("/api/v1/issues?site=nope", 404, "no site"),
        ("/api/v1/issues/abc", 404, "no issue"),
        ("/api/v1/issues/0", 404, "no issue"),
        ("/api/v1/issues/99999999999999999999999", 404, "no issue"),
        ("/api/v1/issues/404", 404, "no issue 404"),
        ("/api/v1/sessions?with_failures=maybe", 400, "with_failures"),
        ("/api/v1/sessions?cursor=WzEsMl0", 400, "cursor"),  # [1,2]: id must be a string
        ("/api/v1/releases?site=nope", 404, "no site"),
        ("/api/v1/releases?cursor=WyJ4Il0", 400, "cursor"),
        ("/api/v1/issues?statuss=resolved", 400, "unknown parameter 'statuss'"),
        ("/api/v1/issues?status=open&status=all", 400, "give status once"),
        ("/api/v1/issues/1?x=1", 400, "unknown parameter 'x'; this takes none"),
        ("/api/v1/issues?status=", 400, "status must be one of"),
        ("/api/v1/issues?limit=", 400, "limit"),
    ],
)
def test_bad_input_is_a_json_4xx(
    shop: Shop, client: TestClient[Any], url: str, status: int, message: str
) -> None:
    token = new_token(shop, f"bad-{uuid.uuid4().hex[:8]}")
    r = client.get(url, headers=auth(token))
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and message in r.json()["error"]
    assert r.headers["content-type"].startswith("application/json")
