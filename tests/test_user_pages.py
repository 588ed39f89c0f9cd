"""/users through a real `retrospec serve`: change your password (other logins end), sign a
user out everywhere, remove a user; all behind login and CSRF."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.accounts import PASSWORD, add_user, csrf_of, login
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow
NEW_PASSWORD = "another long passphrase"


def test_users_page_changes_passwords_and_ends_logins(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(demo="false", jobs="false")
    add_user(server.settings, "alice")
    bob = add_user(server.settings, "bob")
    with (
        httpx.Client(base_url=server.base_url) as here,
        httpx.Client(base_url=server.base_url) as elsewhere,
        httpx.Client(base_url=server.base_url) as bobs,
        httpx.Client(base_url=server.base_url) as fresh,
    ):
        check(here, elsewhere, bobs, fresh, bob_id=bob.id)


def check(
    here: httpx.Client,
    elsewhere: httpx.Client,
    bobs: httpx.Client,
    fresh: httpx.Client,
    *,
    bob_id: int,
) -> None:
    csrf = login(here)  # type: ignore[arg-type]
    login(elsewhere)  # type: ignore[arg-type]
    login(bobs, "bob")  # type: ignore[arg-type]

    page = here.get("/users")
    assert page.status_code == 200 and "alice" in page.text and "bob" in page.text
    assert 'action="/users/password"' in page.text
    # Every change needs the CSRF token.
    assert here.post(f"/users/{bob_id}/logout-all").status_code == 403

    wrong = here.post(
        "/users/password",
        data={"csrf_token": csrf, "current_password": "nope nope nope",
              "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )  # fmt: skip
    assert wrong.status_code == 403 and "current password is wrong" in wrong.text
    changed = here.post(
        "/users/password",
        data={"csrf_token": csrf, "current_password": PASSWORD,
              "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )  # fmt: skip
    assert changed.status_code == 200 and "1 other login ended" in changed.text
    assert here.get("/users", follow_redirects=False).status_code == 200  # this one stays
    assert elsewhere.get("/users", follow_redirects=False).status_code == 303  # that one ended

    assert bobs.get("/", follow_redirects=False).status_code == 200
    ended = here.post(f"/users/{bob_id}/logout-all", data={"csrf_token": csrf})
    assert ended.status_code == 200 and "Ended 1 login of bob" in ended.text
    assert bobs.get("/", follow_redirects=False).status_code == 303

    me = here.get("/users").text
    alice_id = int(me.split('action="/users/')[1].split("/logout-all")[0])
    refused = here.post(f"/users/{alice_id}/remove", data={"csrf_token": csrf})
    assert refused.status_code == 400 and "signed in with" in refused.text
    removed = here.post(f"/users/{bob_id}/remove", data={"csrf_token": csrf_of(here)})  # type: ignore[arg-type]
    assert removed.status_code == 200 and "Removed bob" in removed.text
    assert ">bob<" not in here.get("/users").text
    assert here.post(f"/users/{2**70}/remove", data={"csrf_token": csrf}).status_code == 404

    # Signing yourself out everywhere ends this login too.
    out = here.post(
        f"/users/{alice_id}/logout-all", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert here.get("/", follow_redirects=False).status_code == 303
    # The new password is the one that works now.
    login(fresh, "alice", NEW_PASSWORD)  # type: ignore[arg-type]
