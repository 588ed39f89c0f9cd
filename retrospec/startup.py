"""Every start-up write in one place: secret, migrations, interrupted runs, demo site, setup link.

create_app calls start() once, before anything serves; it writes on one connection in one short
transaction (after the migrations, which commit one by one) and returns what it did as a typed
record that `retrospec serve` prints and the runtime keeps. It also records the URL the server
is reached at, so links the CLI prints match the running server (`served_url`).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass

from retrospec import __version__
from retrospec.auth import issue_setup_token
from retrospec.jobs.runs import mark_interrupted_runs
from retrospec.settings import Settings
from retrospec.sites import Site, ensure_demo_site, revoke_demo_key
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import make_private_dirs, prepare_database


def instance_secret(settings: Settings) -> bytes:
    """The signing secret: from settings, else generated once into <data_dir>/secret (0600)."""
    if settings.secret:
        return settings.secret.encode("utf-8")
    path = settings.data_path / "secret"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    make_private_dirs(path.parent)
    value = secrets.token_urlsafe(48).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its secret
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


@dataclass(frozen=True, slots=True)
class Startup:
    """What start() did."""

    secret: bytes
    migrations: tuple[int, ...]
    interrupted_runs: int
    demo_site: Site | None
    setup_url: str | None

    def lines(self, settings: Settings) -> list[str]:
        """What `retrospec serve` prints before it starts listening (warnings are one line)."""
        lines = [
            f"RetroSpec {__version__} — data in {settings.data_path}",
            f"Dashboard: {settings.base_url}/",
        ]
        if self.demo_site is not None:
            lines.append(f"Demo page: {settings.base_url}/demo")
        lines.extend(f"Warning: {w}" for w in warnings(settings, demo=self.demo_site is not None))
        if self.setup_url is not None:
            lines.append(
                f"No dashboard account yet. Create the first one (link works once): "
                f"{self.setup_url}"
            )
        return lines


def warnings(settings: Settings, *, demo: bool) -> list[str]:
    """One line for everything public by design that is switched on, and risky addresses."""
    out = []
    public = not settings.listens_on_loopback
    if demo:
        where = f"anyone who can reach {settings.host}" if public else "any local program"
        out.append(
            f"/demo is on and its ingest key is public by design: {where} can send data to "
            "the demo site (set demo = false to turn it off)"
        )
    if public and not settings.public_url:
        out.append(
            f"listening on {settings.host} without public_url: links will say "
            f"{settings.base_url}; set public_url to the address users reach"
        )
    return out


SERVED_URL_KEY = "served_url"


def served_url(conn: sqlite3.Connection) -> str | None:
    """The base URL the last `retrospec serve` on this database announced, if any."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (SERVED_URL_KEY,)).fetchone()
    return None if row is None else str(row[0])


def start(settings: Settings, *, jobs: bool) -> Startup:
    """Prepare the data directory and database for a server about to start."""
    secret = instance_secret(settings)
    # A missing or read-only bucket fails the start with one line naming blob_url.
    BlobStore(settings.effective_blob_url, settings.blob_options).check()
    applied = prepare_database(settings.database, synchronous=settings.sqlite_synchronous)
    conn = connect(settings.database, synchronous=settings.sqlite_synchronous)
    try:

        def write(c: sqlite3.Connection) -> tuple[int, Site | None, str | None]:
            # Runs left 'running' by a crash are only ours to close when this process runs jobs.
            # On PostgreSQL other processes may be mid-run: each job clears its own dead runs
            # when it next takes its lock (scheduler.run_job).
            interrupted = mark_interrupted_runs(c) if jobs and not settings.uses_postgres else 0
            demo = ensure_demo_site(c, secret) if settings.demo_enabled else None
            if demo is None:
                revoke_demo_key(c)  # off now: its public key must stop working too
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (SERVED_URL_KEY, settings.base_url),
            )
            # Each start issues a new link while no account exists (the old one stops working).
            return interrupted, demo, issue_setup_token(c)

        interrupted, demo, token = DirectWriter(conn).call(write)
    finally:
        conn.close()
    setup_url = None if token is None else f"{settings.base_url}/setup?token={token}"
    return Startup(
        secret=secret,
        migrations=tuple(applied),
        interrupted_runs=interrupted,
        demo_site=demo,
        setup_url=setup_url,
    )
