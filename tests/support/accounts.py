"""Dashboard accounts: users written straight to SQLite, and signing in through the login form."""

from __future__ import annotations

import re

from litestar.testing import TestClient

from retrospec import auth
from retrospec.settings import Settings
from retrospec.storage.db import DirectWriter, connect

PASSWORD = "correct horse battery"


def write(settings: Settings, fn: object) -> object:
    """Run fn(conn) in a write transaction on a connection of its own."""
    conn = connect(settings.database)
    try:
        return DirectWriter(conn).call(fn)  # type: ignore[arg-type]
    finally:
        conn.close()


def add_user(settings: Settings, name: str = "alice", password: str = PASSWORD) -> auth.User:
    """Create a dashboard account directly in SQLite."""
    digest = auth.hash_password(password)
    user = write(settings, lambda c: auth.create_user(c, name, digest))
    assert isinstance(user, auth.User)
    return user


def form_token(client: TestClient[object], path: str = "/login") -> str:
    """The CSRF token of the form on the page at path."""
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def login(client: TestClient[object], name: str = "alice", password: str = PASSWORD) -> str:
    """Sign in through the form; returns the dashboard CSRF token."""
    token = form_token(client)
    res = client.post(
        "/login",
        data={"csrf_token": token, "username": name, "password": password},
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    return csrf_of(client)


def csrf_of(client: TestClient[object]) -> str:
    """The signed-in client's dashboard CSRF token (as the pages hand it to htmx)."""
    page = client.get("/sites")
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)
