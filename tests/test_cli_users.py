"""`retrospec users remove|passwd|logout-all USERNAME` on a real database."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from retrospec import auth
from retrospec.cli.main import app as cli_app
from retrospec.settings import Settings
from retrospec.storage.db import reading
from tests.support.accounts import PASSWORD, add_user, write

NEW_PASSWORD = "another long passphrase"


def logins(db: Path, user_id: int) -> int:
    with reading(db) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM auth_sessions WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
        )


def test_passwd_logout_all_and_remove(settings: Settings) -> None:
    env = {"RETROSPEC_DATA_DIR": str(settings.data_path)}
    alice = add_user(settings, "alice")
    bob = add_user(settings, "bob")
    for user in (alice, alice, bob):
        write(settings, lambda c, u=user: auth.start_session(c, u.id, 1))
    runner = CliRunner()

    changed = runner.invoke(
        cli_app,
        ["users", "passwd", "ALICE", "--password-stdin"],
        input=NEW_PASSWORD + "\n",
        env=env,
    )
    assert changed.exit_code == 0, changed.output
    assert "2 logins ended" in changed.output
    assert logins(settings.db_path, alice.id) == 0 and logins(settings.db_path, bob.id) == 1
    with reading(settings.db_path) as conn:
        found = auth.get_credentials(conn, "alice")
    assert found is not None
    assert auth.verify_password(found[2], NEW_PASSWORD) and not auth.verify_password(
        found[2], PASSWORD
    )

    ended = runner.invoke(cli_app, ["users", "logout-all", "bob"], env=env)
    assert ended.exit_code == 0 and "ended 1 login of bob" in ended.output
    assert logins(settings.db_path, bob.id) == 0

    removed = runner.invoke(cli_app, ["users", "remove", "bob"], env=env)
    assert removed.exit_code == 0 and "removed user bob" in removed.output
    listed = runner.invoke(cli_app, ["users", "list", "--json"], env=env)
    assert '"bob"' not in listed.output and '"alice"' in listed.output

    for args in (["remove", "nobody"], ["logout-all", "nobody"]):
        missing = runner.invoke(cli_app, ["users", *args], env=env)
        assert missing.exit_code == 1 and "no user 'nobody'" in str(missing.exception)
    short = runner.invoke(
        cli_app, ["users", "passwd", "alice", "--password-stdin"], input="short\n", env=env
    )
    assert short.exit_code != 0
