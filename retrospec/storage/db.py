"""Database access: one writer thread with group commit, a pool of read connections, helpers.

SQLite by default; a `postgresql://` URL in place of the file path opens PostgreSQL through
storage/postgres.py, whose connections offer the same sqlite3 surface (typed as one here).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

T = TypeVar("T")
P = ParamSpec("P")
WriteFn = Callable[[sqlite3.Connection], T]
# A batch function writes many queued items of one kind with a few executemany calls and
# returns one result per item (an Exception instance for an item it refused, untouched).
BatchFn = Callable[[sqlite3.Connection, list[Any]], list[Any]]
# A stage function runs on the writer connection just before the group's transaction (never
# inside it): blob writes the rows will point at, and the reads that decide them. It returns
# one value per item: the item to hand to the batch function, or an Exception (that item is
# answered with it and not written).
StageFn = Callable[[sqlite3.Connection, list[Any]], list[Any]]
log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
SQLITE_FULL = 13  # "database or disk is full": a 507 for ingest, not a bug
CHECKPOINT_INTERVAL_S = 0.5
# After a checkpoint has copied everything back, the next write restarts the WAL and SQLite
# cuts the file down to this size: a burst (or a long read holding checkpoints back) grows the
# WAL, but it does not stay big.
WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
# Under a load with no pause the WAL never restarts by itself (Writer._checkpoint_passes); past
# this size the writer copies the last frames back itself, which lets its next write restart
# the WAL. That copy fsyncs and stalls ingest: 117 ms median at half load on the reference VM
# while it also flushed every page the checkpointer had copied since the last restart, 21-69
# ms (four traced runs) now that the checkpointer flushes the WAL and the database ahead of it
# (_flush_wal, _flush_copied). So it is a safety valve: under a sustained load (the WAL grows
# 25-40 MB/s at half of saturation here) it fires every ~9 s; any pause in the load restarts
# the WAL long before.
WAL_RESTART_BYTES = 256 * 1024 * 1024
# Before the writer steps in: at most this many catch-up passes on the checkpointer thread,
# stopping once one copied this few frames, so the writer's share is small.
RESTART_PASSES = 4
RESTART_FRAMES_LEFT = 200


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: Path | str) -> bool:
    """Whether a database target is a PostgreSQL URL (else it is a SQLite file path)."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def _datasync(fd: int) -> None:
    # macOS has no fdatasync; fsync also writes the file's metadata, which is all it adds.
    getattr(os, "fdatasync", os.fsync)(fd)


def _sqlite_descriptor(target: str, known: int | None = None) -> int | None:
    """A descriptor SQLite holds open on the file at real path `target` (Linux: /proc/self/fd),
    or None; `known`, the one found last time, is checked first (one readlink, not a scan).

    To fsync the file without opening one of our own: closing any descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included. The descriptor is only ever
    flushed, so one closed or reused meanwhile costs an error or a harmless extra flush.
    """

    def points_there(fd: int | str) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}") == target
        except OSError:
            return False

    if known is not None and points_there(known):
        return known
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    return next((int(name) for name in names if points_there(name)), None)


def is_postgres(conn: sqlite3.Connection) -> bool:
    """Whether a connection is a PostgreSQL one (for the few statements that differ)."""
    return getattr(conn, "backend", "sqlite") == "postgres"


@contextlib.contextmanager
def exclusive(target: Path | str, name: str) -> Iterator[bool]:
    """Yield whether this process may run `name` now, across every process on one database.

    PostgreSQL: a session advisory lock on a connection of its own, held until the block ends;
    a process that dies loses it with its connection. SQLite: one server per database file, and
    the scheduler already runs each job once at a time there, so always True.
    """
    if not is_postgres_url(target):
        yield True
        return
    conn = connect(target)
    key = zlib.crc32(f"retrospec:{name}".encode())
    try:
        got = bool(conn.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0])
        yield got
    finally:
        conn.close()  # releases the lock


def connect(
    path: Path | str, *, synchronous: str = "normal", readonly: bool = False
) -> sqlite3.Connection:
    """Open a connection with the pragmas every RetroSpec connection uses."""
    if is_postgres_url(path):
        from retrospec.storage import postgres

        return cast(sqlite3.Connection, postgres.connect(str(path), readonly=readonly))
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
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
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
    fn: Callable[[sqlite3.Connection], Any] | None
    # Exactly one of these: a concurrent future (job threads) or an asyncio future + its loop.
    future: Future[Any] | None = None
    afuture: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    batch_fn: BatchFn | None = None
    item: Any = None
    stage_fn: StageFn | None = None


class Writer:
    """The single writer connection: a thread that commits queued write functions in groups.

    Writes queued together commit in one transaction, each inside a SAVEPOINT, so one failing
    write rolls back alone while the rest of the group commits; writes from other threads (jobs)
    commit one per transaction instead, taking turns with the ingest groups. Callers are
    answered only after COMMIT returns.
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
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._finish_checkpoint = threading.Event()
        self._wal_bytes = 0  # as the checkpointer last saw it
        self._db_flushed_at = 0  # the WAL frame the database file was last flushed up to
        self._db_fd: int | None = None  # SQLite's descriptor that flush used (_flush_copied)
        self._cut_wal_later = False
        self.wal_restarts = 0  # forced restarts set up by _checkpoint_here
        self._pending: collections.deque[_Op] = collections.deque()  # see _run

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
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None

    def _checkpoint_loop(self) -> None:
        # PASSIVE checkpoints never block the writer; they copy what readers no longer need.
        conn = connect(self._path, synchronous=self._synchronous)
        try:
            page = int(conn.execute("PRAGMA page_size").fetchone()[0])
            while not self._stop_checkpoints.wait(CHECKPOINT_INTERVAL_S):
                try:
                    self._checkpoint_passes(conn, page)
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed: %s", exc)
            # The writer has stopped: copy everything back and leave an empty WAL behind
            # (waiting briefly for a CLI reader, never holding up the shutdown for long).
            conn.execute("PRAGMA busy_timeout = 2000")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                log.warning("final WAL checkpoint failed: %s", exc)
        finally:
            conn.close()

    def submit(self, fn: WriteFn[T]) -> Future[T]:
        """Queue fn; the future resolves after the group containing it commits."""
        if self._thread is None:
            raise RuntimeError("writer is not running")
        future: Future[T] = Future()
        self._queue.put(_Op(fn, future=future))
        return future

    def call(self, fn: WriteFn[T]) -> T:
        """Run fn on the writer and wait (for job threads; never call from the event loop)."""
        return self.submit(fn).result()

    async def run(self, fn: WriteFn[T]) -> T:
        """Run fn on the writer and await its commit."""
        if self._thread is None:
            raise RuntimeError("writer is not running")
        loop = asyncio.get_running_loop()
        afuture: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn, afuture=afuture, loop=loop))
        return await afuture

    async def run_batched(
        self, batch_fn: BatchFn, item: Any, *, stage: StageFn | None = None
    ) -> Any:
        """Queue one item for batch_fn; items queued together are written in one call.

        stage, if given, runs first for the items queued together that share it, in the writer
        thread but outside the transaction (see StageFn); pass the same object every time.
        """
        if self._thread is None:
            raise RuntimeError("writer is not running")
        loop = asyncio.get_running_loop()
        afuture: asyncio.Future[Any] = loop.create_future()
        op = _Op(None, afuture=afuture, loop=loop, batch_fn=batch_fn, item=item, stage_fn=stage)
        self._queue.put(op)
        return await afuture

    def _run(self) -> None:
        postgres = is_postgres_url(self._path)
        try:
            conn = connect(self._path, synchronous=self._synchronous)
            if not postgres:
                # Checkpoints run on the checkpointer thread instead: an automatic one inside a
                # COMMIT copies ~4 MB of pages while every queued ingest waits for its answer.
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException as exc:  # surfaced to start()
            self._start_error = exc
            self._ready.set()
            return
        if not postgres:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="retrospec-checkpoint", daemon=True
            )
            self._checkpointer.start()
        self._ready.set()
        # Writes from other threads (job slices, uploads) wait here and commit one per
        # transaction, each after whatever ingest is queued by then: a job that hands over
        # several slices at once never holds ingest back for more than one slice.
        pending = self._pending
        stopping = False
        try:
            while not (stopping and not pending):
                group: list[_Op] = []
                if not pending and not stopping:
                    first = self._queue.get()
                    if first is None:
                        break
                    group.append(first)
                while not stopping and len(group) < self._max_group:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stopping = True
                        break
                    group.append(nxt)
                # Batched writes (ingest) commit first and on their own: a slow job write in
                # the same group must not hold back their answers. The event loop's other
                # writes (dashboard actions: short) commit together after them.
                batched = [op for op in group if op.batch_fn is not None]
                actions = [op for op in group if op.batch_fn is None and op.future is None]
                pending.extend(op for op in group if op.future is not None)
                if postgres and getattr(conn, "closed", False):
                    conn = self._reconnect(conn)
                if batched:
                    self._commit_group(conn, batched)
                if actions:
                    self._commit_group(conn, actions)
                if pending:
                    self._commit_group(conn, [pending.popleft()])
                self._between_groups(conn)
        finally:
            conn.close()

    def _between_groups(self, conn: sqlite3.Connection) -> None:
        # The group just committed restarted the WAL without cutting the file (_checkpoint_here):
        # the size limit comes back once nothing is queued.
        if self._cut_wal_later and self._idle():
            self._cut_wal_later = False
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        # A restart asked for by the checkpointer waits for a moment with nothing queued (it then
        # delays only what arrives meanwhile), unless the WAL has grown to twice the restart size.
        if self._finish_checkpoint.is_set() and (
            self._idle() or self._wal_bytes > WAL_RESTART_BYTES * 2
        ):
            self._finish_checkpoint.clear()
            self._checkpoint_here(conn)

    def _idle(self) -> bool:
        return not self._pending and self._queue.empty()

    def _checkpoint_passes(self, conn: sqlite3.Connection, page: int) -> None:
        _busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self._wal_bytes = frames * page
        if self._wal_bytes <= WAL_RESTART_BYTES:
            self._flush_copied(frames, done)
            return
        # SQLite restarts the WAL only when a write begins with every frame copied back,
        # which never happens while writes keep coming (each lands during the copy): the file
        # then grows without end, ~40 MB/s at half of a saturating load here. Past the restart
        # size, more passes copy what landed during the last one until that is little, and the
        # writer copies the rest between two write groups, so its next transaction starts the
        # WAL over from the beginning of the file.
        for _ in range(RESTART_PASSES):
            before = done
            _busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if done - before <= RESTART_FRAMES_LEFT:
                break
        # The writer's copy starts with an fsync of the WAL, as slow as the frames not yet on
        # disk (130 ms per restart measured); flushed here, it covers only what lands from now.
        self._flush_copied(frames, done)
        self._flush_wal()
        # Those flushes take tens of ms under load, and frames keep landing meanwhile: one more
        # pass copies them and a flush of its few pages follows, so the writer's own copy and
        # fsyncs cover only what lands after it. (Its gain is within the VM's spread: restarts
        # took 21 and 69 ms median in two traced runs without it, 25 and 27 ms with it.)
        _busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self._flush_copied(frames, done)
        self._finish_checkpoint.set()

    def _flush_copied(self, frames: int, done: int) -> None:
        # SQLite fsyncs the database file only when a checkpoint copies the WAL to its end.
        # Under a steady load only the writer's restart ever does (_checkpoint_here), and its
        # fsync then wrote out every page these passes had copied since the last restart (a
        # restart took 117 ms median at half load here, 6 a minute, with ingest waiting: the
        # bulk of that p99). Flushed after each pass instead, off the writer, that fsync covers
        # only the pages of its own copy.
        if frames <= 0 or done >= frames or done == self._db_flushed_at:
            return  # nothing copied since the last flush, or SQLite synced a complete copy
        self._db_flushed_at = done
        self._db_fd = fd = _sqlite_descriptor(os.path.realpath(self._path), self._db_fd)
        if fd is None:
            return
        try:
            _datasync(fd)
        except OSError as exc:  # closed meanwhile (a connection went away): the next pass
            log.debug("flushing the database file failed: %s", exc)

    def _flush_wal(self) -> None:
        # Only the WAL: SQLite keeps no locks on it. Never open and close the database file
        # (or -shm) here: closing any descriptor of a file drops every POSIX lock this process
        # holds on it, the connections' included (that showed up as "disk I/O error").
        try:
            fd = os.open(f"{self._path}-wal", os.O_RDONLY)
        except OSError:
            return
        try:
            _datasync(fd)
        except OSError as exc:
            log.warning("flushing the WAL failed: %s", exc)
        finally:
            os.close(fd)

    def _checkpoint_here(self, conn: sqlite3.Connection) -> None:
        # Outside any transaction, with no other writer: copies what the checkpointer thread
        # could not (the frames written meanwhile), unless a reader still needs them.
        try:
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
            return
        if not busy and frames == done:
            self.wal_restarts += 1
            # The write that restarts the WAL would also cut the file down to the size limit:
            # an ftruncate of the whole excess inside a commit, 130-150 ms of ingest p99 when
            # measured. Under the flood the file is reused as it is; the limit comes back once
            # the queue is empty, so the next restart in a pause cuts it.
            conn.execute("PRAGMA journal_size_limit = -1")
            self._cut_wal_later = True

    def _reconnect(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        # A PostgreSQL server restart or network cut breaks the connection; the group that
        # saw it failed (nobody was told it was stored), later groups get a new connection.
        try:
            fresh = connect(self._path, synchronous=self._synchronous)
        except Exception as exc:
            log.warning("database reconnect failed: %s", exc)
            return conn
        with contextlib.suppress(Exception):
            conn.close()
        return fresh

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        live = [op for op in group if op.future is None or op.future.set_running_or_notify_cancel()]
        if not live:
            return
        # Stage steps (blob writes) happen before BEGIN: never blob work inside a transaction.
        outcomes = _stage(conn, live)
        if outcomes:
            refused = {id(op) for op, _r, _e in outcomes}
            live = [op for op in live if id(op) not in refused]
        if live:
            outcomes.extend(self._transact(conn, live))
        # Answer async callers with one wake-up per event loop rather than one per operation.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Op, Any, BaseException | None]]] = {}
        for outcome in outcomes:
            op, result, error = outcome
            if op.loop is not None:
                by_loop.setdefault(op.loop, []).append(outcome)
            elif op.future is not None:
                if error is None:
                    op.future.set_result(result)
                else:
                    op.future.set_exception(error)
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, items)

    def _transact(
        self, conn: sqlite3.Connection, live: list[_Op]
    ) -> list[tuple[_Op, Any, BaseException | None]]:
        outcomes: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            _begin_immediate(conn)
            batches: dict[BatchFn, list[_Op]] = {}
            for op in live:
                if op.batch_fn is not None:
                    batches.setdefault(op.batch_fn, []).append(op)
                else:
                    outcomes.append(_run_one(conn, op))
            for batch_fn, ops in batches.items():
                outcomes.extend(_run_batch(conn, batch_fn, ops))
            conn.execute("COMMIT")
        except Exception as exc:
            # The commit itself failed (disk full, I/O error): nothing in the group is durable.
            if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
                log.warning("write group of %d failed: the disk is full", len(live))
            else:
                log.exception("write group of %d failed", len(live))
            if conn.in_transaction and not getattr(conn, "closed", False):
                conn.execute("ROLLBACK")
            outcomes = [(op, None, exc) for op in live]
        else:
            self.commits += 1
            self.ops += len(live)
        return outcomes


def _stage(conn: sqlite3.Connection, ops: list[_Op]) -> list[tuple[_Op, Any, BaseException | None]]:
    """Run the stage steps of a group; replace each op's item, return the refused ones."""
    by_stage: dict[StageFn, list[_Op]] = {}
    for op in ops:
        if op.stage_fn is not None:
            by_stage.setdefault(op.stage_fn, []).append(op)
    refused: list[tuple[_Op, Any, BaseException | None]] = []
    for stage_fn, staged in by_stage.items():
        try:
            results = stage_fn(conn, [op.item for op in staged])
        except Exception:
            # Unexpected: stage the items one by one so only the offending item fails.
            log.exception("stage of %d items failed; retrying one by one", len(staged))
            results = []
            for op in staged:
                try:
                    (result,) = stage_fn(conn, [op.item])
                except Exception as exc:
                    result = exc
                results.append(result)
        if conn.in_transaction:  # a stage step must leave the connection as it found it
            conn.execute("ROLLBACK")
        for op, result in zip(staged, results, strict=True):
            op.stage_fn = None
            if isinstance(result, Exception):
                refused.append((op, None, result))
            else:
                op.item = result
    return refused


def _run_one(conn: sqlite3.Connection, op: _Op) -> tuple[_Op, Any, BaseException | None]:
    # A savepoint per operation: one failing write rolls back alone, the group still commits.
    conn.execute("SAVEPOINT op")
    try:
        if op.fn is not None:
            result = op.fn(conn)
        else:
            assert op.batch_fn is not None
            (result,) = op.batch_fn(conn, [op.item])
            if isinstance(result, Exception):
                raise result
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return op, None, exc
    conn.execute("RELEASE op")
    return op, result, None


def _run_batch(
    conn: sqlite3.Connection, batch_fn: BatchFn, ops: list[_Op]
) -> list[tuple[_Op, Any, BaseException | None]]:
    conn.execute("SAVEPOINT batch")
    try:
        results = batch_fn(conn, [op.item for op in ops])
    except Exception:
        # Something the batch function did not expect: redo the items one by one so only the
        # offending item fails.
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        log.warning("batched write of %d items failed; retrying one by one", len(ops))
        return [_run_one(conn, op) for op in ops]
    conn.execute("RELEASE batch")
    return [
        (op, None, r) if isinstance(r, Exception) else (op, r, None)
        for op, r in zip(ops, results, strict=True)
    ]


def _resolve(items: list[tuple[_Op, Any, BaseException | None]]) -> None:
    for op, result, error in items:
        fut = op.afuture
        if fut is None or fut.done():
            continue  # the request was cancelled (client went away); its write still stands
        if error is None:
            fut.set_result(result)
        else:
            fut.set_exception(error)


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
    """Read-only connections for the web layer, each used by one thread at a time.

    Every query is a plain sync function taking a connection (the same one the CLI and jobs
    call directly); `await reads.run(fn, *args)` borrows a connection and runs fn on the pool's
    threads, so the event loop never waits on SQLite.
    """

    def __init__(self, path: Path | str, size: int = 4) -> None:
        self._path = path
        self._size = size
        self._idle: asyncio.Queue[sqlite3.Connection] | None = None
        self._all: list[sqlite3.Connection] = []
        self._threads: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Open the connections (inside the running event loop)."""
        self._idle = asyncio.Queue()
        self._threads = ThreadPoolExecutor(self._size, thread_name_prefix="retrospec-read")
        for _ in range(self._size):
            conn = connect(self._path, readonly=True)
            self._all.append(conn)
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        """Close every connection."""
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None
        for conn in self._all:
            conn.close()
        self._all.clear()

    async def run(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: Any) -> T:
        """fn(conn, *args) on a borrowed read connection, off the event loop."""
        if self._idle is None or self._threads is None:
            raise RuntimeError("read pool is not open")
        conn = await self._idle.get()
        loop = asyncio.get_running_loop()
        try:
            if getattr(conn, "closed", False):  # PostgreSQL lost it: a fresh one, if it can
                conn = await loop.run_in_executor(self._threads, self._replace, conn)
            call = functools.partial(fn, conn, *args)
            try:
                return await loop.run_in_executor(self._threads, call)
            except Exception:
                if not getattr(conn, "closed", False):
                    raise
            # The connection broke under the query (server restart, failover): reads are safe
            # to repeat once on a new one.
            conn = await loop.run_in_executor(self._threads, self._replace, conn)
            return await loop.run_in_executor(self._threads, functools.partial(fn, conn, *args))
        finally:
            self._idle.put_nowait(conn)

    def _replace(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        fresh = connect(self._path, readonly=True)
        with contextlib.suppress(Exception):
            conn.close()
        self._all = [fresh if c is conn else c for c in self._all]
        return fresh


# Parameters per statement for the multi-row helpers below: far under SQLite's 32,766 and
# PostgreSQL's 65,535.
ROWS_PARAMS = 4000


def _params_per_statement(conn: sqlite3.Connection) -> int:
    if is_postgres(conn):
        return ROWS_PARAMS
    # A SQLite built with a lower limit (999 before 3.32) gets statements that fit it.
    return min(ROWS_PARAMS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


@functools.lru_cache(maxsize=64)
def _around_values_row(sql: str) -> tuple[str, str, str]:
    """(before, row, after) of an INSERT's parenthesised VALUES row (nested parentheses
    allowed); cached, as the writer inserts with the same few statements all day."""
    start = sql.index("(", sql.upper().index("VALUES"))
    depth = 0
    for at in range(start, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[at], 0)
        if depth == 0:
            return sql[:start], sql[start : at + 1], sql[at + 1 :]
    raise ValueError("unbalanced VALUES row")


def insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run `INSERT ... VALUES (?, ...) [ON CONFLICT ...]` for every row, as executemany would,
    in a few multi-row statements on SQLite (its VALUES tuple repeated, rows in order); returns
    the rows inserted or updated, as executemany's rowcount does.

    Why not executemany on the writer: Python's sqlite3 lets go of the GIL around each row's
    step, and while the event loop is busy each of those hand-backs waits its turn. Measured in
    one hour, a 1,000-failure cluster slice took 36 ms alone and 110-122 ms beside a busy Python
    thread; written this way, 31 and 44-51. On PostgreSQL executemany stays: psycopg pipelines
    it, and there an upsert may not touch one row twice in a statement.
    """
    if not rows:
        return 0
    if is_postgres(conn):
        return int(conn.executemany(sql, rows).rowcount)
    return _values_rows(conn, sql, rows)


def update_from_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run `WITH v(...) AS (VALUES (?, ...)) UPDATE t SET ... FROM v WHERE ...` with every row
    in v, in a few statements; returns the rows updated. SQLite only (3.33+): one statement
    where a per-row UPDATE would hand the GIL over once per row (see insert_rows)."""
    if not rows:
        return 0
    return _values_rows(conn, sql, rows)


def _values_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """sql with its one VALUES row repeated per row, in statements that fit the parameter cap."""
    head, one, tail = _around_values_row(sql)
    per = max(1, _params_per_statement(conn) // max(1, one.count("?")))
    changed = 0
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        n = conn.execute(
            f"{head}{', '.join([one] * len(chunk))}{tail}",
            [value for row in chunk for value in row],
        ).rowcount
        # Python's sqlite3 gives no rowcount for a statement that starts with WITH.
        changed += n if n >= 0 else int(conn.execute("SELECT changes()").fetchone()[0])
    return changed


def update_ids(
    conn: sqlite3.Connection, head: str, params: Sequence[Any], ids: Sequence[int], tail: str = ""
) -> int:
    """`head id IN (?, ...) tail` over ids in a few statements (see insert_rows: why not
    executemany); returns the rows changed."""
    changed = 0
    per = _params_per_statement(conn) - len(params)
    for start in range(0, len(ids), per):
        chunk = ids[start : start + per]
        changed += conn.execute(
            f"{head} id IN ({', '.join('?' * len(chunk))}) {tail}", [*params, *chunk]
        ).rowcount
    return changed


@contextlib.contextmanager
def reading(path: Path | str) -> Iterator[sqlite3.Connection]:
    """One read-only connection, closed afterwards (CLI commands, tools, tests)."""
    conn = connect(path, readonly=True)
    try:
        yield conn
    finally:
        conn.close()
