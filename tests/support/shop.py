"""A populated data dir for the CLI and retention tests: batches in through the real ingest
endpoint, replays and issues out of the real jobs, and the CLI run in-process or as a process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from typer.testing import CliRunner, Result

from retrospec.app import create_app
from retrospec.cli import main as cli
from retrospec.jobs.context import JobContext
from retrospec.scheduler import run_job
from retrospec.settings import Settings
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect, transaction
from tests.support.data import add_site, make_settings
from tests.support.envelopes import cart_batch
from tests.support.paths import REPO

DAY_MS = 86_400_000


def run_jobs(settings: Settings, *names: str, **options: Any) -> None:
    """Run jobs the way `retrospec jobs run` does (own connection, short transactions);
    options as the scheduler's (force=True: the replay job skips its rebuild wait)."""
    conn = connect(settings.database)
    try:
        ctx = JobContext(
            settings=settings,
            blobs=BlobStore(settings.effective_blob_url),
            write=DirectWriter(conn).call,
            options=options,
        )
        for name in names:
            run_job(ctx, name)
    finally:
        conn.close()


def ingest(settings: Settings, key: str, bodies: Iterable[dict[str, Any]]) -> None:
    """POST batches through the in-process ingest endpoint; every one must be acknowledged."""
    with TestClient(create_app(settings, start_jobs=False)) as client:
        for body in bodies:
            r = client.post(f"/api/v1/ingest?key={key}", content=json.dumps(body))
            assert r.status_code == 202, r.text


def age_sessions(db: Path | str, session_ids: Iterable[str], ms: int) -> None:
    """Move sessions (and their chunks and failures) ms into the past, as if received then."""
    ids = list(session_ids)
    conn = connect(db)
    with contextlib.closing(conn), transaction(conn):
        conn.executemany(
            "UPDATE sessions SET started_at = started_at - ?, last_seen_at = last_seen_at - ? "
            "WHERE id = ?",
            [(ms, ms, s) for s in ids],
        )
        conn.executemany(
            "UPDATE chunks SET received_at = received_at - ? WHERE session_id = ?",
            [(ms, s) for s in ids],
        )
        conn.executemany(
            "UPDATE failures SET received_at = received_at - ? WHERE session_id = ?",
            [(ms, s) for s in ids],
        )


@dataclass
class Shop:
    """A populated data dir: one site, sessions with replays, one issue (id 1)."""

    settings: Settings
    key: str
    sessions: list[str]

    @property
    def env(self) -> dict[str, str]:
        return {
            "RETROSPEC_DATA_DIR": str(self.settings.data_path),
            "RETROSPEC_DEMO": "false",
            **storage_env(self.settings),
        }


def storage_env(settings: Settings) -> dict[str, str]:
    """RETROSPEC_* variables naming settings' database and blob store (when not the default)."""
    names = ("database_url", "blob_url", "s3_endpoint_url", "s3_region", "s3_access_key_id")
    names += ("s3_secret_access_key",)
    return {f"RETROSPEC_{n.upper()}": getattr(settings, n) for n in names if getattr(settings, n)}


def make_shop(
    data_dir: Path, n: int = 4, name: str = "shop", settings: Settings | None = None
) -> Shop:
    """n sessions by n users hitting the same TypeError, clustered and with built replays."""
    settings = settings or make_settings(data_dir, demo=False)
    _, key = add_site(settings, name)
    sessions = [str(uuid.uuid4()) for _ in range(n)]
    ingest(settings, key, (cart_batch(s, user=f"user{i}") for i, s in enumerate(sessions)))
    run_jobs(settings, "cluster", "replays")
    return Shop(settings, key, sessions)


def invoke(shop: Shop, *args: str) -> Result:
    """Run the CLI in-process (typer's runner); usage errors give exit 2 here too."""
    return CliRunner().invoke(cli.app, list(args), env=shop.env)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `retrospec` entry point with stdout and stderr as pipes (not a terminal)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    clean.pop("COLUMNS", None)
    clean.pop("FORCE_COLOR", None)
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "retrospec", *args],
        env=clean,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
