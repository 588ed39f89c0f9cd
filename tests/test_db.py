"""The writer thread: group commit, per-operation isolation, batched writes, checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrospec.jobs.context import JobContext
from retrospec.settings import Settings
from retrospec.storage import db as storage_db
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import (
    WAL_SIZE_LIMIT_BYTES,
    DirectWriter,
    Writer,
    connect,
    insert_rows,
    transaction,
    update_ids,
)
from tests.support.data import add_site
from tests.support.envelopes import heavy_failures
from tests.support.servers import ServerProcess


@pytest.fixture
def db(settings: Settings) -> Any:
    """The test's database (a SQLite path, or a PostgreSQL URL) with a scratch table t."""
    target = settings.database if settings.uses_postgres else settings.db_path
    conn = connect(target)
    try:
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    finally:
        conn.close()
    return target


@contextlib.contextmanager
def _conn(target: Any) -> Iterator[sqlite3.Connection]:
    conn = connect(target)
    try:
        yield conn
    finally:
        conn.close()


def _insert(k: int) -> Any:
    return lambda c: c.execute("INSERT INTO t (k, v) VALUES (?, 'x')", (k,)).rowcount


pytestmark = pytest.mark.backends
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
with contextlib.suppress(ImportError):
    import psycopg

    INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


def test_a_failing_operation_rolls_back_alone(db: Path) -> None:
    writer = Writer(db)
    writer.start()
    try:
        futures = [writer.submit(_insert(k)) for k in (1, 2, 1, 3)]  # the second 1 collides
        results = []
        for fut in futures:
            try:
                results.append(fut.result(timeout=10))
            except INTEGRITY_ERRORS:
                results.append("error")
    finally:
        writer.stop()
    assert results == [1, 1, "error", 1]
    with _conn(db) as conn:
        assert [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")] == [1, 2, 3]


def test_concurrent_async_writes_share_commits_and_all_land(db: Path) -> None:
    writer = Writer(db)
    writer.start()

    async def many() -> list[int]:
        return await asyncio.gather(*(writer.run(_insert(k)) for k in range(500)))

    try:
        results = asyncio.run(many())
    finally:
        writer.stop()
    assert results == [1] * 500
    assert writer.ops == 500 and writer.commits < 500  # grouped, not one commit per write
    with _conn(db) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 500


def _batch(conn: sqlite3.Connection, items: list[int]) -> list[Any]:
    ok = [k for k in items if k >= 0]
    conn.executemany("INSERT INTO t (k, v) VALUES (?, 'b')", [(k,) for k in ok])
    return [True if k >= 0 else ValueError(f"refused {k}") for k in items]


def test_batched_items_commit_together_and_refusals_touch_nothing(db: Path) -> None:
    writer = Writer(db)
    writer.start()

    async def go() -> list[Any]:
        tasks = [writer.run_batched(_batch, k) for k in (10, -1, 11)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(go())
    finally:
        writer.stop()
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], ValueError)
    with _conn(db) as conn:
        assert [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")] == [10, 11]


def test_a_batch_function_that_raises_is_retried_item_by_item(db: Path) -> None:
    def fragile(conn: sqlite3.Connection, items: list[int]) -> list[Any]:
        if len(items) > 1:
            raise RuntimeError("unexpected")
        return _batch(conn, items)

    writer = Writer(db)
    writer.start()

    async def go() -> list[Any]:
        return await asyncio.gather(*(writer.run_batched(fragile, k) for k in (20, 21, 22)))

    try:
        assert asyncio.run(go()) == [True, True, True]
    finally:
        writer.stop()


def test_stage_runs_before_the_transaction_and_can_refuse_items(db: Path) -> None:
    calls: list[tuple[list[int], bool]] = []

    def stage(conn: sqlite3.Connection, items: list[int]) -> list[Any]:
        calls.append((list(items), conn.in_transaction))
        if 99 in items:
            raise RuntimeError("unexpected")  # retried one by one: only 99 fails
        return [ValueError("no room") if k == 31 else k * 10 for k in items]

    writer = Writer(db)
    writer.start()

    async def go() -> list[Any]:
        writer.submit(lambda c: time.sleep(0.2))  # hold the writer: the rest is one group
        tasks = [writer.run_batched(_batch, k, stage=stage) for k in (30, 31, 32)]
        tasks.append(writer.run_batched(_batch, 40))  # no stage: written as given
        first = await asyncio.gather(*tasks, return_exceptions=True)
        writer.submit(lambda c: time.sleep(0.2))
        second = await asyncio.gather(
            *(writer.run_batched(_batch, k, stage=stage) for k in (98, 99)),
            return_exceptions=True,
        )
        return [*first, *second]

    try:
        results = asyncio.run(go())
    finally:
        writer.stop()
    assert results[0] is True and results[2] is True and results[3] is True
    assert isinstance(results[1], ValueError)
    assert results[4] is True and isinstance(results[5], RuntimeError)
    assert calls[0] == ([30, 31, 32], False)  # once per group, outside any transaction
    assert calls[1:] == [([98, 99], False), ([98], False), ([99], False)]
    with _conn(db) as conn:
        assert [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")] == [40, 300, 320, 980]


def test_the_checkpointer_flushes_the_pages_it_copies_itself(
    db: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite fsyncs the database file only after a checkpoint that reaches the WAL's end; a
    pass cut short (here by a reader's snapshot, under load by new writes) leaves its pages
    dirty for the writer's next complete copy to flush. The checkpointer flushes them itself."""
    if backend != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has no WAL file of ours to checkpoint")
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("finding SQLite's descriptor needs Linux's /proc")
    monkeypatch.setattr(storage_db, "CHECKPOINT_INTERVAL_S", 0.02)
    inode = db.stat().st_ino
    flushed: list[tuple[str, int]] = []
    real_fdatasync = os.fdatasync

    def recording_fdatasync(fd: int) -> None:
        flushed.append((threading.current_thread().name, os.fstat(fd).st_ino))
        real_fdatasync(fd)

    monkeypatch.setattr(storage_db.os, "fdatasync", recording_fdatasync)
    reader = connect(db, readonly=True)
    writer = Writer(db)
    writer.start()
    try:
        for k in range(500):
            writer.submit(lambda c, k=k: c.execute("INSERT INTO t VALUES (?, ?)", (k, "x" * 200)))
        writer.call(lambda c: None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 500  # snapshot held
        for k in range(500, 1000):
            writer.submit(lambda c, k=k: c.execute("INSERT INTO t VALUES (?, ?)", (k, "x" * 200)))
        writer.call(lambda c: None)
        deadline = time.monotonic() + 10
        while ("retrospec-checkpoint", inode) not in flushed and time.monotonic() < deadline:
            time.sleep(0.02)
        reader.execute("COMMIT")
    finally:
        writer.stop()
        reader.close()
    assert ("retrospec-checkpoint", inode) in flushed, flushed
    assert not any(name == "retrospec-writer" for name, _ino in flushed)
    with _conn(db) as conn:  # the borrowed descriptor was never closed: SQLite's locks hold
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1000


def test_the_checkpointer_copies_the_wal_into_the_database(db: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has no WAL file of ours to checkpoint")
    before = db.stat().st_size
    writer = Writer(db)
    writer.start()
    try:
        for k in range(3000):
            writer.submit(lambda c, k=k: c.execute("INSERT INTO t VALUES (?, ?)", (k, "x" * 200)))
        writer.call(lambda c: None)  # everything before it has committed
        deadline = time.monotonic() + 10
        # The writer never checkpoints (autocheckpoint is off on its connection) and no
        # connection has closed, so only the checkpointer thread can grow the main file.
        while db.stat().st_size < before + 500_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        grown = db.stat().st_size - before
    finally:
        writer.stop()
    assert grown >= 500_000
    with _conn(db) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3000


def _wal_checkpoint_sequence(wal: Path) -> int | None:
    # The WAL header's checkpoint sequence number (big-endian, bytes 12-15), which SQLite
    # increments each time it resets the WAL to write from the start again. Reading the WAL
    # file is safe: SQLite keeps no POSIX locks on it (unlike the database file and -shm).
    with wal.open("rb") as f:
        header = f.read(16)
    return int.from_bytes(header[12:16], "big") if len(header) == 16 else None


def test_the_wal_stays_bounded_while_writes_never_pause(
    db: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has no WAL file of ours to checkpoint")
    limit = 256 * 1024
    monkeypatch.setattr(storage_db, "WAL_RESTART_BYTES", limit)
    monkeypatch.setattr(storage_db, "WAL_SIZE_LIMIT_BYTES", limit)  # what a restart cuts to
    monkeypatch.setattr(storage_db, "CHECKPOINT_INTERVAL_S", 0.02)
    wal = Path(f"{db}-wal")
    writer = Writer(db)
    writer.start()
    biggest = 0
    rows = 24000  # 48 MB of rows: 192 times the restart size
    resets: set[int | None] = set()  # the WAL header's checkpoint sequence numbers seen

    def insert(start: int) -> None:
        # Two of these keep the writer's queue busy: no pause between two write groups in
        # which a checkpoint could finish on its own.
        for k in range(start, rows, 2):
            writer.call(lambda c, k=k: c.execute("INSERT INTO t VALUES (?, ?)", (k, "x" * 2000)))

    read_errors: list[Exception] = []
    reads = 0

    def read() -> None:
        # Readers in the same process all along, each on a new connection as a job run opens
        # one, keep reading through the restarts.
        nonlocal reads
        while any(t.is_alive() for t in threads):
            try:
                conn = connect(db, readonly=True)
                try:
                    conn.execute("SELECT max(k) FROM t").fetchall()
                    reads += 1
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                read_errors.append(exc)
            time.sleep(0.02)  # now and then, as the dashboard reads: a restart needs a
            # moment with no reader inside the WAL

    try:
        threads = [threading.Thread(target=insert, args=(n,)) for n in (0, 1)]
        for t in threads:
            t.start()
        reader = threading.Thread(target=read)
        reader.start()
        while any(t.is_alive() for t in threads):
            with contextlib.suppress(FileNotFoundError):
                biggest = max(biggest, wal.stat().st_size)
                resets.add(_wal_checkpoint_sequence(wal))
            time.sleep(0.005)
        for t in threads:
            t.join()
        reader.join()
    finally:
        writer.stop()
    assert read_errors == [] and reads > 10
    # SQLite itself started the WAL over from its beginning, again and again (each reset bumps
    # the header's checkpoint sequence), not just our counter.
    resets.discard(None)  # a header not written yet
    assert writer.wal_restarts >= 2 and len(resets) >= 3, (writer.wal_restarts, resets)
    # Without restarts the WAL holds every frame written: at least one 4 kB page per commit,
    # 98 MB here (330 MB measured). With them it is reused from the start, its size set by how
    # fast checkpoints keep up: 4-8 MB on an idle machine, and one slow fsync on a busy disk
    # lets it grow by what lands meanwhile (28 MB seen in CI, 87 MB with a dd flood beside it,
    # for the 32 MB of rows this test used to write), so the bound is the no-restart floor.
    assert biggest < rows * 4096, biggest
    with _conn(db) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == rows


def test_transaction_helper_rolls_back_on_error(db: Path) -> None:
    conn = connect(db)
    try:
        with pytest.raises(RuntimeError), transaction(conn):
            conn.execute("INSERT INTO t (k, v) VALUES (99, 'x')")
            raise RuntimeError("boom")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        conn.close()


@pytest.mark.slow
def test_the_wal_shrinks_back_after_a_burst(serve: Callable[..., ServerProcess]) -> None:
    # A reader holding an old snapshot keeps checkpoints from finishing: the WAL grows past the
    # limit. Once it lets go, the next checkpoint and write cut the file back down.
    server = serve(
        jobs="false", client_rate_limit_per_second="0", session_rate_limit_per_second="0"
    )
    _, key = add_site(server.settings, "shop")
    url = f"{server.base_url}/api/v1/ingest"
    wal = server.settings.db_path.with_name("retrospec.sqlite3-wal")
    reader = sqlite3.connect(server.settings.db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM failures").fetchone()
    sid = str(uuid.uuid4())
    seq = 0
    while wal.stat().st_size <= WAL_SIZE_LIMIT_BYTES:
        response = httpx.post(url, params={"key": key}, content=heavy_failures(sid, seq))
        assert response.status_code == 202
        seq += 1
        assert seq < 200, "the WAL never grew"
    reader.execute("COMMIT")
    reader.close()
    deadline = time.monotonic() + 30
    while wal.stat().st_size > WAL_SIZE_LIMIT_BYTES:
        assert time.monotonic() < deadline, wal.stat().st_size
        time.sleep(0.6)  # a checkpoint, then a write that restarts the WAL and cuts it
        httpx.post(url, params={"key": key}, content=heavy_failures(sid, seq, n=1))
        seq += 1
    server.stop()
    assert not wal.exists() or wal.stat().st_size == 0  # a clean stop leaves it empty


def test_writes_from_job_threads_take_turns_with_ingest_one_transaction_each(db: Path) -> None:
    """A job hands over several writes at once: each commits alone, and ingest queued behind
    them goes first, so an ingest waits for at most one job write."""
    writer = Writer(db)
    writer.start()
    order: list[str] = []
    entered, gate = threading.Event(), threading.Event()

    def job_write(name: str, k: int) -> Callable[[sqlite3.Connection], int]:
        def write(conn: sqlite3.Connection) -> int:
            if name == "gate":
                entered.set()
                assert gate.wait(10)
            order.append(name)
            return int(conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, name)).rowcount)

        return write

    def ingest(conn: sqlite3.Connection, items: list[int]) -> list[Any]:
        order.append("ingest")
        conn.executemany("INSERT INTO t (k, v) VALUES (?, 'ingest')", [(k,) for k in items])
        return [True] * len(items)

    async def go() -> list[Any]:
        held = writer.submit(job_write("gate", 1))
        assert await asyncio.to_thread(entered.wait, 10)  # the writer is busy with this one
        later = [writer.submit(job_write(name, k)) for name, k in (("a", 2), ("b", 3))]
        task = asyncio.ensure_future(writer.run_batched(ingest, 10))
        await asyncio.sleep(0.05)  # queued behind a and b
        before = writer.commits
        gate.set()
        got = [await task, *[await asyncio.wrap_future(f) for f in (held, *later)]]
        return [got, writer.commits - before]

    try:
        (results, commits) = asyncio.run(go())
    finally:
        writer.stop()
    assert order == ["gate", "ingest", "a", "b"]
    assert results == [True, 1, 1, 1]
    assert commits == 4  # gate, the ingest group, a, b: one transaction each
    with _conn(db) as conn:
        assert [tuple(r) for r in conn.execute("SELECT k, v FROM t ORDER BY k")] == [
            (1, "gate"), (2, "a"), (3, "b"), (10, "ingest"),
        ]  # fmt: skip


@pytest.mark.parametrize("through", ["writer", "direct"])
def test_write_all_stops_at_the_first_failing_write(
    db: Path, settings: Settings, through: str
) -> None:
    writer = Writer(db)
    direct = connect(db)
    blobs = BlobStore(settings.effective_blob_url)
    if through == "writer":
        writer.start()
        ctx = JobContext(settings=settings, blobs=blobs, write=writer.call, submit=writer.submit)
    else:
        ctx = JobContext(settings=settings, blobs=blobs, write=DirectWriter(direct).call)
    try:
        assert ctx.write_all([_insert(1), _insert(2)]) == [1, 1]
        with pytest.raises(INTEGRITY_ERRORS):
            ctx.write_all([_insert(3), _insert(1), _insert(4)])  # 1 is taken: 4 never lands
    finally:
        writer.stop()
        direct.close()
    with _conn(db) as conn:
        assert [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")] == [1, 2, 3]


def test_multi_row_statements_write_what_one_statement_per_row_would(db: Path) -> None:
    """insert_rows and update_ids against executemany, upserts of one key twice included, with
    statements cut small (a SQLite built with a low parameter limit)."""
    upsert = (
        "INSERT INTO {t} (id, n, v) VALUES (?, coalesce(?, 0), ?) "
        "ON CONFLICT (id) DO UPDATE SET n = {t}.n + excluded.n, v = excluded.v"
    )
    rows = [(k % 7, k, f"v{k}") for k in range(40)] + [(3, None, "none")]
    with _conn(db) as conn:
        if not storage_db.is_postgres(conn):
            conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 8)  # two rows per statement
        for table in ("one", "many"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, n INTEGER, v TEXT)")
        with transaction(conn):
            conn.executemany(upsert.format(t="one"), rows)
            assert insert_rows(conn, upsert.format(t="many"), rows) == len(rows)
            assert insert_rows(conn, upsert.format(t="many"), []) == 0
            # DO NOTHING: only the rows that went in count, as with executemany's rowcount.
            fresh = "INSERT INTO many (id, n, v) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING"
            assert insert_rows(conn, fresh, [(1, 0, "old"), (20, 0, "new"), (21, 0, "new")]) == 2
            conn.execute("DELETE FROM many WHERE id IN (20, 21)")
        tables = [
            [tuple(r) for r in conn.execute(f"SELECT id, n, v FROM {t} ORDER BY id")]
            for t in ("one", "many")
        ]
        assert tables[0] == tables[1] and len(tables[0]) == 7
        with transaction(conn):
            changed = update_ids(conn, "UPDATE many SET v = ? WHERE", ("x",), [0, 2, 4, 5, 9])
        assert changed == 4  # there is no 9
        assert [r[0] for r in conn.execute("SELECT id FROM many WHERE v = 'x' ORDER BY id")] == [
            0, 2, 4, 5,
        ]  # fmt: skip


def test_update_from_rows_updates_each_row_once_across_statements(db: Path) -> None:
    """A VALUES-fed UPDATE (the cluster job's claim) matches a per-row UPDATE, cut into
    statements of two rows, with its WHERE honoured and the changed rows counted."""
    claim = (
        "WITH v(id, tag, keep) AS (VALUES (?, ?, ?)) UPDATE claim_t SET tag = v.tag, "
        "body = CASE WHEN v.keep THEN claim_t.body END "
        "FROM v WHERE claim_t.id = v.id AND claim_t.tag IS NULL"
    )
    with _conn(db) as conn:
        if storage_db.is_postgres(conn):
            pytest.skip("SQLite only: PostgreSQL claims with update_ids")
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 6)  # two rows per statement
        conn.execute("CREATE TABLE claim_t (id INTEGER PRIMARY KEY, tag TEXT, body TEXT)")
        with transaction(conn):
            conn.executemany(
                "INSERT INTO claim_t (id, tag, body) VALUES (?, ?, ?)",
                [(k, "taken" if k == 3 else None, f"b{k}") for k in range(8)],
            )
            rows = [(0, "a", True), (1, "a", False), (3, "b", True), (5, "b", False), (9, "c", 1)]
            assert storage_db.update_from_rows(conn, claim, rows) == 3  # 3 is taken, 9 absent
            assert storage_db.update_from_rows(conn, claim, []) == 0
        after = [tuple(r) for r in conn.execute("SELECT id, tag, body FROM claim_t ORDER BY id")]
        assert after == [
            (0, "a", "b0"), (1, "a", None), (2, None, "b2"), (3, "taken", "b3"),
            (4, None, "b4"), (5, "b", None), (6, None, "b6"), (7, None, "b7"),
        ]  # fmt: skip
