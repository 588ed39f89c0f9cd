"""SQLite access: one writer thread with group commit, async readers, sync helpers for CLI/jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], T]
log = logging.getLogger("retrospec.db")

BUSY_TIMEOUT_MS = 30_000


def connect(
    path: Path | str, *, synchronous: str = "normal", readonly: bool = False
) -> sqlite3.Connection:
    """Open a connection with the pragmas every RetroSpec connection uses."""
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    conn.row_factory = sqlite3.Row
    _configure(conn, synchronous=synchronous, readonly=readonly)
    return conn


def _configure(conn: sqlite3.Connection, *, synchronous: str, readonly: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not readonly:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"SQLite refused WAL mode (got {mode})")
    sync = "FULL" if synchronous == "full" else "NORMAL"
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -32000")
    if readonly:
        conn.execute("PRAGMA query_only = ON")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short BEGIN IMMEDIATE transaction (takes the write lock up front, so no deadlocks)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class DirectWriter:
    """Writes from a process without the server's writer thread (CLI, tests)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def call(self, fn: WriteFn[T]) -> T:
        """Run fn in its own short write transaction."""
        with transaction(self.conn):
            return fn(self.conn)


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: Future[Any] = field(default_factory=Future)


class Writer:
    """The single writer connection: a thread that commits queued write functions in groups.

    Each queued function runs inside a SAVEPOINT, so one failing batch rolls back alone while
    the rest of the group commits; callers are answered only after COMMIT returns.
    """

    def __init__(self, path: Path | str, *, synchronous: str = "normal", max_group: int = 512):
        self._path = path
        self._synchronous = synchronous
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.commits = 0
        self.ops = 0

    def start(self) -> None:
        """Open the connection in the writer thread and start taking work."""
        self._thread = threading.Thread(target=self._run, name="retrospec-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        """Finish queued work, close the connection and join the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def submit(self, fn: WriteFn[T]) -> Future[T]:
        """Queue fn; the future resolves after the group containing it commits."""
        if self._thread is None:
            raise RuntimeError("writer is not running")
        op = _Op(fn)
        self._queue.put(op)
        return op.future

    def call(self, fn: WriteFn[T]) -> T:
        """Run fn on the writer and wait (for job threads; never call from the event loop)."""
        return self.submit(fn).result()

    async def run(self, fn: WriteFn[T]) -> T:
        """Run fn on the writer and await its commit."""
        return await asyncio.wrap_future(self.submit(fn))

    def _run(self) -> None:
        try:
            conn = connect(self._path, synchronous=self._synchronous)
        except BaseException as exc:  # surfaced to start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        try:
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                group = [first]
                while len(group) < self._max_group:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stopping = True
                        break
                    group.append(nxt)
                self._commit_group(conn, group)
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        live = [op for op in group if op.future.set_running_or_notify_cancel()]
        if not live:
            return
        outcomes: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            _begin_immediate(conn)
            for op in live:
                conn.execute("SAVEPOINT op")
                try:
                    result = op.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((op, None, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((op, result, None))
            conn.execute("COMMIT")
        except Exception as exc:
            # The commit itself failed (disk full, I/O error): nothing in the group is durable.
            log.exception("write group of %d failed", len(live))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for op in live:
                op.future.set_exception(exc)
            return
        self.commits += 1
        self.ops += len(live)
        for op, result, error in outcomes:
            if error is None:
                op.future.set_result(result)
            else:
                op.future.set_exception(error)


def _begin_immediate(conn: sqlite3.Connection) -> None:
    # busy_timeout covers most waits; a cron purge holding the lock longer is retried here
    # rather than failing an acknowledged-to-be ingest.
    deadline = time.monotonic() + 120
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class ReadPool:
    """A few aiosqlite connections for the web layer's read queries (WAL: readers never block)."""

    def __init__(self, path: Path | str, size: int = 4) -> None:
        self._path = path
        self._size = size
        self._idle: asyncio.Queue[aiosqlite.Connection] | None = None
        self._all: list[aiosqlite.Connection] = []

    async def open(self) -> None:
        """Open the connections (inside the running event loop)."""
        self._idle = asyncio.Queue()
        for _ in range(self._size):
            conn = await aiosqlite.connect(str(self._path), isolation_level=None)
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA query_only = ON")
            self._all.append(conn)
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        """Close every connection."""
        for conn in self._all:
            await conn.close()
        self._all.clear()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[aiosqlite.Connection]:
        """Borrow a read connection."""
        if self._idle is None:
            raise RuntimeError("read pool is not open")
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)


@contextlib.asynccontextmanager
async def open_reader(path: Path | str) -> AsyncIterator[aiosqlite.Connection]:
    """One read connection, for CLI commands that reuse the web layer's async queries."""
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        yield conn
    finally:
        await conn.close()
