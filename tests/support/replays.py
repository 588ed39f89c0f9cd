"""The replay job's harness: a data dir whose batches go through the real ingest path."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrospec.ingest.prepare import decode_envelope, event_bytes, prepare, store_events
from retrospec.ingest.write import write_batch
from retrospec.jobs.context import JobContext, JobResult
from retrospec.replay import job as replay_job
from retrospec.replay import queries as replays
from retrospec.settings import Settings
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import prepare_database
from tests.support.data import add_site, make_settings
from tests.support.envelopes import CHROME_UA, envelope
from tests.support.rrweb import PAGE

T0 = 1_732_560_000_000


@dataclass
class Env:
    """A migrated data dir with one site, a writer connection and the blob store."""

    settings: Settings
    site: Site
    conn: sqlite3.Connection
    blobs: BlobStore

    def send(
        self,
        session_id: str,
        seq: int,
        events: list[dict[str, Any]] | None = None,
        failures: list[dict[str, Any]] | None = None,
        *,
        user: dict[str, str] | None = None,
        received_at: int | None = None,
    ) -> bool:
        """Push one batch through the real ingest path (decode, blob, prepare, insert)."""
        session = {
            "id": session_id,
            "started_at": T0,
            "user_agent": CHROME_UA,
            "url": PAGE.split("?")[0],
            "release": "1.4.2",
            "user": user,
        }
        body = envelope(session, seq, events=events or [], failures=failures or [])
        env = decode_envelope(json.dumps(body).encode())
        raw = event_bytes(env)
        chunk = store_events(self.blobs, self.site, env, raw) if raw is not None else None
        batch = prepare(self.site, env, chunk, received_at or T0 + 60_000 + seq)
        return bool(DirectWriter(self.conn).call(lambda c: write_batch(c, batch)))

    def ctx(self, **options: Any) -> JobContext:
        return JobContext(
            settings=self.settings,
            blobs=self.blobs,
            write=DirectWriter(self.conn).call,
            options=options,
        )

    def run(self, **options: Any) -> JobResult:
        return replay_job.run(self.ctx(**options))

    def session(self, session_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        assert row is not None
        return row

    def events(self, session_id: str) -> list[dict[str, Any]]:
        key = self.session(session_id)["replay_key"]
        return list(json.loads(replays.load_events(self.blobs, key)))

    def markers(self, session_id: str) -> list[tuple[str, str | None, int]]:
        return [(m.kind, m.label, m.offset_ms) for m in replays.list_markers(self.conn, session_id)]

    def chunk_key(self, session_id: str, seq: int) -> str:
        row = self.conn.execute(
            "SELECT blob_key FROM chunks WHERE session_id = ? AND seq = ?", (session_id, seq)
        ).fetchone()
        return str(row[0])

    def artifacts(self) -> list[str]:
        return sorted(k for k, _s, _m in self.blobs.walk("replays"))


def make_env(data_dir: Path, **overrides: Any) -> Env:
    """An Env on a fresh data dir with one site, "shop"."""
    settings = make_settings(data_dir, **overrides)
    prepare_database(settings.database)
    site, _key = add_site(settings, "shop")
    return Env(settings, site, connect(settings.database), BlobStore(settings.effective_blob_url))


def sid(n: int) -> str:
    """A fixed session id, numbered so a test can name its sessions."""
    return f"sess-{n:04d}-0f8c6b1e"
