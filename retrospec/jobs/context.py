"""What a background job gets (JobContext) and gives back (JobResult): the floor jobs stand on.

Job functions (replays, cluster, purge) import only this module from jobs/; the scheduler above
them imports the job functions directly, so nothing here knows which jobs exist.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from retrospec.settings import Settings
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import connect

T = TypeVar("T")


def run_inline(fn: Callable[..., T], *args: Any) -> T:
    """Compute in this thread (the CLI and tests: nothing else competes for the interpreter)."""
    return fn(*args)


class NotWritten(Exception):
    """A write skipped because one queued before it in the same write_all failed."""


class Stopped(Exception):
    """Raised inside a job when the server is shutting down; the run ends cleanly."""


@dataclass(slots=True)
class JobResult:
    """What one run did."""

    items: int = 0
    errors: int = 0
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class JobContext:
    """What a job may use: settings, blobs, a way to write, fresh read connections."""

    settings: Settings
    blobs: BlobStore
    write: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    trigger: str = "cli"
    stop: threading.Event = field(default_factory=threading.Event)
    options: dict[str, Any] = field(default_factory=dict)
    # Where CPU-heavy pure work runs: inline here, a child process in the server.
    compute: Callable[..., Any] = run_inline
    # Queues a write without waiting (the server's writer); None: write_all writes in turn.
    submit: Callable[[Callable[[sqlite3.Connection], Any]], Future[Any]] | None = None

    def write_all(self, fns: Sequence[Callable[[sqlite3.Connection], T]]) -> list[T]:
        """Write each of fns in its own transaction, in order, stopping at the first that
        fails (its error is raised; the ones after it are not written); the results in order.

        The server's writer gets them all at once and commits them back to back, taking turns
        with ingest, without a trip back to this thread in between.
        """
        if self.submit is None:
            return [self.write(fn) for fn in fns]
        failed: list[BaseException] = []  # read and set only on the writer thread, in order

        def guarded(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
            def write(conn: sqlite3.Connection) -> T:
                if failed:
                    raise NotWritten("an earlier write of the same run failed")
                try:
                    return fn(conn)
                except BaseException as exc:
                    failed.append(exc)
                    raise

            return write

        futures = [self.submit(guarded(fn)) for fn in fns]
        concurrent.futures.wait(futures)
        for f in futures:
            if (exc := f.exception()) is not None and not isinstance(exc, NotWritten):
                raise exc
        return [f.result() for f in futures]

    @property
    def database(self) -> str:
        """The database: a SQLite file's path or a PostgreSQL URL."""
        return self.settings.database

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection (the caller closes it)."""
        return connect(self.database, readonly=True)

    def check_stop(self) -> None:
        """Call between batches: ends the run early when the server is stopping."""
        if self.stop.is_set():
            raise Stopped
