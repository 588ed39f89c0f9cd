"""A Feed: failures sent through the real ingest code, and the cluster job run on the same file."""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

from retrospec.clock import now_ms
from retrospec.ingest.prepare import decode_envelope, prepare
from retrospec.ingest.write import write_batch
from retrospec.issues import clustering, grouping_v1
from retrospec.issues.queries import change_status
from retrospec.jobs.context import JobContext, JobResult
from retrospec.settings import Settings
from retrospec.sites import Site
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect
from tests.support.data import add_site
from tests.support.envelopes import CHROME_UA, envelope

PAGE = "https://shop.example.com/cart?step=2"


@dataclass
class Feed:
    """Sends batches through the real ingest code and runs the cluster job on the same file."""

    settings: Settings
    conn: sqlite3.Connection
    site: Site
    seqs: dict[str, int] = field(default_factory=dict)

    def send(
        self,
        session: str,
        *failures: dict[str, Any],
        user: str | None = None,
        ua: str = CHROME_UA,
        release: str | None = "1.4.2",
        url: str = PAGE,
        received_at: int | None = None,
    ) -> None:
        """One ingest batch (failures only) for session, as decode/prepare/write_batch store it."""
        seq = self.seqs.get(session, 0)
        self.seqs[session] = seq + 1
        session_fields = {
            "id": session,
            "started_at": 1_732_560_000_000,
            "anonymous_id": f"anon-{session}",
            "user": {"id": user} if user else None,
            "user_agent": ua,
            "url": url,
            "release": release,
        }
        body = envelope(session_fields, seq, failures=list(failures))
        env = decode_envelope(json.dumps(body).encode())
        batch = prepare(self.site, env, None, now_ms() if received_at is None else received_at)
        assert DirectWriter(self.conn).call(lambda c: write_batch(c, batch))

    def context(self, **options: Any) -> JobContext:
        """A JobContext writing through a DirectWriter on this feed's connection."""
        return JobContext(
            settings=self.settings,
            blobs=BlobStore(self.settings.effective_blob_url),
            write=DirectWriter(self.conn).call,
            options=options,
        )

    def cluster(self, **options: Any) -> JobResult:
        """Run the cluster job once."""
        return clustering.run(self.context(**options))

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Query as plain tuples."""
        return [tuple(r) for r in self.conn.execute(sql, params).fetchall()]

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """One scalar."""
        return self.conn.execute(sql, params).fetchone()[0]

    def clusters(self) -> list[dict[str, Any]]:
        """Every cluster as a dict, oldest first."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM clusters ORDER BY id")]

    def frames(self, cid: int) -> list[dict[str, Any]]:
        """The stored normalised frames of a cluster."""
        text = self.value("SELECT frames FROM cluster_frames WHERE cluster_id = ?", (cid,))
        frames: list[dict[str, Any]] = json.loads(text)
        return frames

    def cluster_as_version_1(self) -> None:
        """Group the unclustered failures as grouping version 1 did and stored them: clusters
        keyed by version-1 hashes, with no upgrade recorded (a database from before version 2).
        """
        rows = [dict(r) for r in self.conn.execute(clustering._SELECT_BATCH, (0, 10_000))]
        items = [
            item._replace(fingerprint=grouping_v1.fingerprint_hash(clustering.failure_input(row)))
            for row, (item, _ok) in zip(rows, clustering.fingerprint_rows(rows)[0], strict=True)
        ]
        DirectWriter(self.conn).call(
            lambda c: clustering.apply_batch(c, items, self.settings.promote_after)
        )

        def as_old(c: sqlite3.Connection) -> None:
            c.execute("UPDATE clusters SET grouping_version = 1")
            c.execute("DELETE FROM meta WHERE key LIKE 'grouping_%'")

        DirectWriter(self.conn).call(as_old)

    def set_status(self, cid: int, action: str) -> str:
        """Resolve, ignore or reopen through the library call."""
        return DirectWriter(self.conn).call(lambda c: change_status(c, cid, action, "tester"))


def make_feed(settings: Settings, name: str = "shop") -> Feed:
    """A Feed on a fresh site in settings' database."""
    site, _key = add_site(settings, name, [])
    return Feed(settings=settings, conn=connect(settings.database), site=site)


def sid() -> str:
    """A fresh SDK-style session id."""
    return str(uuid.uuid4())
