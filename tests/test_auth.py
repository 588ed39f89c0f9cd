"""Accounts, login sessions, CSRF, throttling and the first-account setup link."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from retrospec import auth
from retrospec.app import create_app
from retrospec.cli.main import app as cli_app
from retrospec.errors import BadRequest, Conflict, Forbidden
from retrospec.settings import Settings
from retrospec.storage.db import reading
from retrospec.web.access import safe_next
from tests.support.accounts import PASSWORD, add_user, csrf_of, form_token, login, write
from tests.support.data import make_settings

DASHBOARD_GETS = [
    "/",
    "/?status=resolved&q=x",
    "/issues/1",
    "/sessions",
    "/sessions/abcdefgh1234",
    "/sessions/abcdefgh1234/events",
    "/sites",
]
DASHBOARD_POSTS = [
    "/logout",
    "/issues/1/status",
    "/sites",
    "/sites/demo/origins",
    "/sites/demo/rotate",
]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[object]]:
    with TestClient(create_app(settings, start_jobs=False)) as c:
        yield c


# --- library ------------------------------------------------------------------------------


def test_passwords_are_argon2_and_verify_only_the_right_one() -> None:
    digest = auth.hash_password(PASSWORD)
    assert digest.startswith("$argon2id$")
    assert auth.verify_password(digest, PASSWORD)
    assert not auth.verify_password(digest, PASSWORD + "!")
    assert not auth.verify_password(None, PASSWORD)  # unknown user: same work, still False
    assert not auth.verify_password("not a hash", PASSWORD)
    assert not auth.needs_rehash(digest)
    with pytest.raises(BadRequest):
        auth.validate_password("short")
    with pytest.raises(BadRequest):
        auth.validate_username("../etc")


def test_users_are_unique_regardless_of_case(settings: Settings) -> None:
    add_user(settings, "Alice")
    with pytest.raises(Conflict):
        add_user(settings, "alice")


def test_signatures_reject_tampering() -> None:
    secret = b"s" * 32
    signed = auth.sign(secret, "login-session", "token123")
    assert auth.unsign(secret, "login-session", signed) == "token123"
    assert auth.unsign(secret, "other-purpose", signed) is None
    assert auth.unsign(b"x" * 32, "login-session", signed) is None
    assert auth.unsign(secret, "login-session", "token124." + signed.split(".")[1]) is None
    assert auth.unsign(secret, "login-session", None) is None
    assert auth.unsign(secret, "login-session", "no-dot") is None


def test_login_sessions_store_only_a_hash_and_expire(settings: Settings) -> None:
    user = add_user(settings)
    token, login_ = write(settings, lambda c: auth.start_session(c, user.id, 1.0))  # type: ignore[misc]
    conn = sqlite3.connect(settings.db_path)
    stored = [r[0] for r in conn.execute("SELECT token_hash FROM auth_sessions")]
    conn.close()
    assert stored == [auth.token_digest(token)]
    assert token not in stored

    def load(tok: str) -> auth.Login | None:
        with reading(settings.db_path) as c:
            return auth.load_session(c, tok)

    found = load(token)
    assert found is not None and found.username == "alice"
    assert found.csrf_token == login_.csrf_token
    assert load("forged") is None
    expired, _ = write(settings, lambda c: auth.start_session(c, user.id, -1.0))  # type: ignore[misc]
    assert load(expired) is None
    write(settings, lambda c: auth.end_session(c, token))
    assert load(token) is None


def test_throttle_doubles_the_wait_after_five_failures_per_user_and_ip() -> None:
    clock = [1000.0]
    t = auth.LoginThrottle(clock=lambda: clock[0])
    for _ in range(5):
        assert t.retry_after("bob", "10.0.0.1") == 0
        t.failure("bob", "10.0.0.1")
    assert t.retry_after("bob", "10.0.0.1") == pytest.approx(2.0)
    assert t.retry_after("BOB ", "10.9.9.9") == pytest.approx(2.0)  # per username, any address
    assert t.retry_after("carol", "10.0.0.1") == 0  # the address has more slack
    clock[0] += 2.0
    assert t.retry_after("bob", "10.0.0.1") == 0
    t.failure("bob", "10.0.0.1")
    assert t.retry_after("bob", "10.0.0.1") == pytest.approx(4.0)
    # Spraying many usernames from one address trips the per-address limit.
    for n in range(20):
        t.failure(f"user{n}", "10.6.6.6")
    assert t.retry_after("fresh-name", "10.6.6.6") > 0
    t.success("bob", "10.0.0.1")
    assert t.retry_after("bob", "10.0.0.2") == 0
    clock[0] += 3601
    assert t.retry_after("fresh-name", "10.6.6.6") == 0  # a quiet hour forgets


def test_setup_token_exists_only_while_there_is_no_account(settings: Settings) -> None:
    token = write(settings, auth.issue_setup_token)
    assert isinstance(token, str)
    newer = write(settings, auth.issue_setup_token)
    assert isinstance(newer, str) and newer != token

    def valid(tok: str) -> bool:
        with reading(settings.db_path) as c:
            return auth.setup_token_valid(c, tok)

    assert not valid(token)  # each start replaces the previous link
    assert valid(newer)
    digest = auth.hash_password(PASSWORD)
    with pytest.raises(Forbidden):
        write(settings, lambda c: auth.create_first_user(c, token, "eve", digest))
    write(settings, lambda c: auth.create_first_user(c, newer, "alice", digest))
    assert not valid(newer)  # burnt
    with pytest.raises(Forbidden):
        write(settings, lambda c: auth.create_first_user(c, newer, "mallory", digest))
    assert write(settings, auth.issue_setup_token) is None


def test_safe_next_stays_on_this_server() -> None:
    assert safe_next("/issues/3?x=1") == "/issues/3?x=1"
    for bad in ("//evil.example/", "/\\evil.example", "https://evil.example/", "", None, "x"):
        assert safe_next(bad) == "/"


# --- web ------------------------------------------------------------------------------------


def test_every_dashboard_url_redirects_to_login(client: TestClient[object]) -> None:
    for path in DASHBOARD_GETS:
        res = client.get(path, follow_redirects=False)
        assert res.status_code == 303, path
        assert res.headers["location"].startswith("/login"), path
    assert client.get("/issues/1", follow_redirects=False).headers["location"] == (
        "/login?next=/issues/1"
    )
    htmx = client.get("/", headers={"HX-Request": "true", "HX-Current-URL": "http://x/?q=a"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"] == "/login?next=/%3Fq%3Da"
    for path in DASHBOARD_POSTS:
        res = client.post(path, data={"action": "resolve"}, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"] == "/login", path
    # A forged cookie is not even looked up.
    client.cookies.set("retrospec_session", "token.badsignature")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_login_sets_a_hardened_cookie_and_logout_ends_the_session(
    client: TestClient[object], settings: Settings
) -> None:
    add_user(settings)
    token = form_token(client)
    res = client.post(
        "/login?",
        data={"csrf_token": token, "username": "ALICE", "password": PASSWORD, "next": "/sites"},
        follow_redirects=False,
    )
    assert res.status_code == 303 and res.headers["location"] == "/sites"
    cookie = res.headers["set-cookie"]
    assert cookie.startswith("retrospec_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert "Path=/" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "alice" in page.text
    assert client.get("/login", follow_redirects=False).status_code == 303  # already in
    csrf = csrf_of(client)
    res = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/login"
    assert (
        'retrospec_session=""' in res.headers["set-cookie"]
        or "Max-Age=0" in (res.headers["set-cookie"])
    )
    assert client.get("/", follow_redirects=False).status_code == 303


def test_cookie_is_secure_when_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", cookie_secure=True)
    with TestClient(
        create_app(settings, start_jobs=False), base_url="https://testserver.local"
    ) as c:
        add_user(settings)
        token = form_token(c)
        res = c.post(
            "/login",
            data={"csrf_token": token, "username": "alice", "password": PASSWORD},
            follow_redirects=False,
        )
        assert "Secure" in res.headers["set-cookie"]


def test_state_changes_need_the_csrf_token(client: TestClient[object], settings: Settings) -> None:
    add_user(settings)
    csrf = login(client)
    # No token, a wrong token, a token in the wrong place: all refused, nothing changes.
    assert client.post("/sites", data={"name": "shop"}).status_code == 403
    assert client.post("/sites", data={"name": "shop", "csrf_token": "x" * 43}).status_code == 403
    htmx = client.post(
        "/sites", data={"name": "shop"}, headers={"HX-Request": "true", "X-CSRF-Token": "nope"}
    )
    assert htmx.status_code == 403 and "security token" in htmx.text
    assert "<h2>shop" not in client.get("/sites").text
    ok = client.post("/sites", data={"name": "shop"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and "shown only once" in ok.text
    ok = client.post("/sites", data={"name": "blog", "csrf_token": csrf})
    assert ok.status_code == 200
    # Logout is a state change too.
    assert client.post("/logout").status_code == 403


def test_login_form_needs_its_csrf_token(client: TestClient[object], settings: Settings) -> None:
    add_user(settings)
    client.get("/login")
    res = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert res.status_code == 403
    # A token made for another browser's nonce cookie does not fit this browser's cookie.
    stolen = auth.form_token(client.app.state.rt.secret, "another-browsers-nonce")
    res = client.post(
        "/login", data={"csrf_token": stolen, "username": "alice", "password": PASSWORD}
    )
    assert res.status_code == 403


def test_wrong_passwords_are_refused_then_throttled(
    client: TestClient[object], settings: Settings
) -> None:
    add_user(settings)
    token = form_token(client)
    for _ in range(5):
        res = client.post(
            "/login", data={"csrf_token": token, "username": "alice", "password": "wrong-one"}
        )
        assert res.status_code == 401
        assert "Wrong username or password" in res.text
    res = client.post(
        "/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD}
    )
    assert res.status_code == 429  # even the right password waits out the lockout
    assert int(res.headers["retry-after"]) >= 1
    assert "Too many failed attempts" in res.text
    unknown = client.post(
        "/login", data={"csrf_token": token, "username": "nobody", "password": "whatever1"}
    )
    assert unknown.status_code == 401  # same answer as a wrong password


def test_setup_link_creates_the_first_account_once(settings: Settings) -> None:
    app = create_app(settings, start_jobs=False)
    boot = app.state.rt.startup
    lines = [line for line in boot.lines(settings) if "/setup?token=" in line]
    assert len(lines) == 1 and boot.setup_url in lines[0]
    token = boot.setup_url.split("token=")[1]
    with TestClient(app) as c:
        login_page = c.get("/login")
        assert "No account exists yet" in login_page.text
        assert c.get("/setup?token=wrong").status_code == 403
        page = c.get(f"/setup?token={token}")
        assert page.status_code == 200 and "Create account" in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        form = {
            "csrf_token": csrf.group(1),
            "token": token,
            "username": "admin",
            "password": PASSWORD,
            "password_confirm": PASSWORD + "x",
        }
        assert c.post("/setup", data=form).status_code == 400  # passwords differ
        form["password_confirm"] = PASSWORD
        assert c.post("/setup", data={**form, "csrf_token": ""}).status_code == 403
        res = c.post("/setup", data=form, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"] == "/"
        assert c.get("/").status_code == 200  # signed in
        assert c.get(f"/setup?token={token}").status_code == 403  # burnt
        assert c.post("/setup", data=form).status_code == 403
    again = create_app(settings, start_jobs=False)
    assert again.state.rt.startup.setup_url is None
    assert not any("/setup?token=" in line for line in again.state.rt.startup.lines(settings))


def test_users_add_cli_reads_the_password_from_stdin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"RETROSPEC_DATA_DIR": str(data)}
    runner = CliRunner()
    res = runner.invoke(
        cli_app, ["users", "add", "ops", "--password-stdin"], input=PASSWORD + "\n", env=env
    )
    assert res.exit_code == 0, res.output
    assert "created user ops" in res.output
    conn = sqlite3.connect(data / "retrospec.sqlite3")
    (digest,) = conn.execute("SELECT password_hash FROM users WHERE username = 'ops'").fetchone()
    conn.close()
    assert auth.verify_password(digest, PASSWORD)
    dup = runner.invoke(
        cli_app, ["users", "add", "OPS", "--password-stdin"], input=PASSWORD + "\n", env=env
    )
    assert dup.exit_code != 0
    short = runner.invoke(
        cli_app, ["users", "add", "dev", "--password-stdin"], input="short\n", env=env
    )
    assert short.exit_code != 0
    listed = runner.invoke(cli_app, ["users", "list", "--json"], env=env)
    assert '"username": "ops"' in listed.output
