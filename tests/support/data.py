"""A test's data dir: settings with nothing from the outside, sites written straight to SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrospec.settings import Settings, load_settings
from retrospec.sites import Site, create_site
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import prepare_database


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: a private data dir, no config file, no environment."""
    values = {"data_dir": str(data_dir), **overrides}
    return load_settings(None, env={}, overrides=values).settings


def add_site(
    settings: Settings, name: str = "shop", origins: list[str] | None = None
) -> tuple[Site, str]:
    """Create a site directly in SQLite; returns (site, plain key)."""
    prepare_database(settings.database)
    conn = connect(settings.database)
    try:
        return DirectWriter(conn).call(lambda c: create_site(c, name, origins or []))
    finally:
        conn.close()
