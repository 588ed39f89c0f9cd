"""Migrations: fresh database, already-migrated database, WAL, refusing a newer schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrospec.cli import main as cli
from retrospec.storage.db import connect
from retrospec.storage.migrations import (
    MIGRATIONS,
    current_version,
    latest_version,
    prepare_database,
)


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def test_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    db = tmp_path / "new" / "retrospec.sqlite3"
    applied = prepare_database(db)
    assert applied == [v for v, _, _ in MIGRATIONS]
    assert {"sites", "sessions", "chunks", "failures", "clusters", "job_runs"} <= _tables(db)
    conn = connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert current_version(conn) == latest_version()
    conn.close()


def test_already_migrated_database_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "retrospec.sqlite3"
    prepare_database(db)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')")
    assert prepare_database(db) == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'kept'").fetchone() == ("yes",)
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert count == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "retrospec.sqlite3"
    prepare_database(db)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
            (latest_version() + 1,),
        )
    with pytest.raises(RuntimeError, match="newer than this RetroSpec"):
        prepare_database(db)


def test_migrations_are_numbered_and_append_only() -> None:
    # Numbers are reserved per change (several land in parallel), so gaps are allowed until the
    # lower numbers land; they must only increase.
    versions = [v for v, _, _ in MIGRATIONS]
    assert versions[0] == 1
    assert versions == sorted(set(versions))


def test_a_lower_number_landing_later_is_still_applied(tmp_path: Path) -> None:
    db = tmp_path / "retrospec.sqlite3"
    prepare_database(db)
    with sqlite3.connect(db) as conn:
        # As if this database had been migrated before migration 2 existed.
        conn.execute("DELETE FROM schema_migrations WHERE version = 2")
        conn.execute("DROP INDEX sessions_replay_live")
        conn.execute("DROP TABLE purge_queue")
    assert prepare_database(db) == [2]
    assert "purge_queue" in _tables(db)


def test_migrate_command_applies_without_serving(tmp_path: Path) -> None:
    data = tmp_path / "d"
    result = CliRunner().invoke(cli.app, ["migrate"], env={"RETROSPEC_DATA_DIR": str(data)})
    assert result.exit_code == 0, result.output
    assert "applied migrations" in result.output
    assert "sessions" in _tables(data / "retrospec.sqlite3")
    again = CliRunner().invoke(cli.app, ["migrate"], env={"RETROSPEC_DATA_DIR": str(data)})
    assert again.exit_code == 0 and "up to date" in again.output
