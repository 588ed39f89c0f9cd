"""Alert tests' shared builders: a Feed with alert settings, its writer, the deliver job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrospec.alerts import deliver, outbox
from retrospec.jobs.context import JobResult
from retrospec.storage.db import DirectWriter
from retrospec.storage.migrations import prepare_database
from tests.support.data import make_settings
from tests.support.envelopes import error
from tests.support.feeds import Feed, make_feed, sid
from tests.support.receivers import SmtpReceiver

# No hold before sending, quick retries and timeouts, links on a public URL.
FAST = {
    "alert_delay_seconds": 0,
    "alert_retry_seconds": 0.2,
    "alert_timeout_seconds": 2,
    "public_url": "https://retrospec.example.com",
}


def make(tmp_path: Path, smtp: SmtpReceiver | None = None, **overrides: Any) -> Feed:
    values = {**FAST, **overrides}
    if smtp is not None:
        values.setdefault("smtp_url", smtp.url)
    settings = make_settings(tmp_path / "data", **values)
    prepare_database(settings.database)
    return make_feed(settings)


def write(feed: Feed, fn: Any) -> Any:
    return DirectWriter(feed.conn).call(fn)


def run(feed: Feed, **options: Any) -> JobResult:
    return deliver.run(feed.context(**options))


def two_sessions(feed: Feed, **failure: Any) -> None:
    """The same bug in two sessions: with promote_after 2 the cluster job promotes it."""
    feed.send(sid(), error(**failure), user="u1")
    feed.send(sid(), error(**failure), user="u2")


def statuses(feed: Feed) -> dict[str, int]:
    return outbox.outbox_counts(feed.conn)
