"""Copy a SQLite install into PostgreSQL (and its blobs into another store): `migrate-data`.

Rows: every table but schema_migrations (the target's own migrations write that), parents
before children (foreign keys), each in primary-key order, in batches of one executemany with
ON CONFLICT DO NOTHING in a short transaction. The source is read in one read transaction, so
the copy is one consistent snapshot even while a server still writes the file; a rerun sends
the rows again and the target keeps the ones it has, so it resumes an interrupted copy and adds
what arrived since. Rows changed after they were copied are NOT copied again: the cut-over copy
runs with the server stopped (README "Cut-over from SQLite").

No table is per-process: job locks are PostgreSQL advisory locks, not rows; job_runs left
'running' are closed on the target by the next holder of that job's lock.

Blobs: every object under the source root, same key, stored bytes as they are (zstd stays
zstd), streamed; an object already on the target with the same size is skipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

from retrospec.errors import ConfigError, InvalidBlobKey, RetrospecError
from retrospec.storage.blobs import BlobStore, validate_key
from retrospec.storage.db import DirectWriter, connect, is_postgres, is_postgres_url
from retrospec.storage.migrations import current_version, latest_version, prepare_database

BATCH_ROWS = 1000
BLOB_WORKERS = 8  # object stores answer one request at a time per connection: overlap them
# Written by the target's own migrations, never copied.
NOT_COPIED = frozenset({"schema_migrations"})


class TransferFailed(RetrospecError):
    """A copy step failed (a row the target refused, a blob that could not be written)."""


@dataclass(frozen=True, slots=True)
class TableCount:
    """Rows of one table: in the source snapshot, on the target afterwards, added by this run."""

    table: str
    source: int
    target: int
    copied: int

    @property
    def ok(self) -> bool:
        """Whether the target holds exactly the source's rows."""
        return self.source == self.target


@dataclass(slots=True)
class BlobCount:
    """Objects under the source root, on the target, copied and skipped by this run."""

    source: int = 0
    target: int = 0
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every source object is on the target with its size."""
        return not self.missing


def _naming(option: str, exc: ConfigError) -> ConfigError:
    """The same one-line error, naming the command's option instead of the setting."""
    message = exc.message
    for setting in ("database_url: ", "blob_url: "):
        message = message.removeprefix(setting)
    return ConfigError(f"{option}: {message}")


def prepare_target(url: str) -> list[int]:
    """Reach and migrate the target database; errors are one line naming --to.

    A database migrated by a newer RetroSpec is refused (this code cannot know its tables);
    an empty one gets the same migrations as `retrospec migrate`.
    """
    if not is_postgres_url(url):
        raise ConfigError("--to: expected a postgresql://user:password@host:port/database URL")
    try:
        conn = connect(url)
        try:
            version = current_version(conn)
        finally:
            conn.close()
        if version > latest_version():
            raise ConfigError(
                f"--to: its schema {version} is newer than this RetroSpec ({latest_version()}); "
                "upgrade RetroSpec first"
            )
        return prepare_database(url)
    except ConfigError as exc:
        raise exc if exc.message.startswith("--to: ") else _naming("--to", exc) from None


def open_target_blobs(url: str, options: dict[str, Any]) -> BlobStore:
    """The target blob store, checked (exists, takes writes); errors name --blobs-to."""
    store = BlobStore(url, options)
    try:
        store.check()
    except ConfigError as exc:
        raise _naming("--blobs-to", exc) from None
    return store


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def tables(conn: sqlite3.Connection) -> list[str]:
    """The source's tables to copy, parents before the tables whose foreign keys name them."""
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    graph: dict[str, set[str]] = {}
    for name in names:
        if name in NOT_COPIED:
            continue
        parents = {str(r[2]) for r in conn.execute(f"PRAGMA foreign_key_list({_quote(name)})")}
        graph[name] = {p for p in parents if p != name and p in names}
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())  # stable order between runs
        order.extend(ready)
        sorter.done(*ready)
    return order


def _columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """(every column, primary-key columns in key order) of a source table."""
    info = list(conn.execute(f"PRAGMA table_info({_quote(table)})"))
    cols = [str(r[1]) for r in info]
    key = [str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: int(r[5]))]
    if not key:
        raise TransferFailed(f"table {table} has no primary key: a rerun could not resume it")
    return cols, key


def _target_columns(dst: sqlite3.Connection) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for table, column in dst.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    ):
        out.setdefault(str(table), set()).add(str(column))
    return out


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0])


def _batches(cur: Any, size: int) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cur.fetchmany(size):
        yield [tuple(r) for r in rows]


def copy_table(
    src: sqlite3.Connection, dst: sqlite3.Connection, table: str, *, batch: int = BATCH_ROWS
) -> int:
    """Insert the source table's rows the target lacks, in primary-key order; return how many."""
    cols, key = _columns(src, table)
    col_list = ", ".join(_quote(c) for c in cols)
    order = ", ".join(_quote(c) for c in key)
    marks = ", ".join("?" for _ in cols)
    insert = f"INSERT INTO {_quote(table)} ({col_list}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    cur = src.execute(f"SELECT {col_list} FROM {_quote(table)} ORDER BY {order}")
    writer = DirectWriter(dst)
    copied = 0
    for rows in _batches(cur, batch):

        def write(c: sqlite3.Connection, rows: list[tuple[Any, ...]] = rows) -> int:
            return int(c.executemany(insert, rows).rowcount)

        try:
            copied += writer.call(write)
        except Exception as exc:  # psycopg's errors: name the table, keep one line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TransferFailed(f"copying {table}: the target refused a row: {reason}") from None
    return copied


def copy_rows(
    src: sqlite3.Connection,
    dst: sqlite3.Connection,
    *,
    batch: int = BATCH_ROWS,
    progress: Callable[[TableCount], None] | None = None,
) -> list[TableCount]:
    """Copy every table from src (SQLite) to dst (PostgreSQL, migrated); count both sides."""
    if is_postgres(src) or not is_postgres(dst):
        raise TransferFailed("migrate-data copies a SQLite database into a PostgreSQL one")
    target_cols = _target_columns(dst)
    counts: list[TableCount] = []
    # One read transaction: every table from the same snapshot of the file.
    src.execute("BEGIN")
    try:
        for table in tables(src):
            cols, _key = _columns(src, table)
            lacking = set(cols) - target_cols.get(table, set())
            if lacking:
                raise TransferFailed(
                    f"the target has no {table}({', '.join(sorted(lacking))}): "
                    "is it migrated by another RetroSpec version?"
                )
            source = _count(src, table)
            copied = copy_table(src, dst, table, batch=batch)
            count = TableCount(table, source, _count(dst, table), copied)
            counts.append(count)
            if progress is not None:
                progress(count)
    finally:
        src.execute("ROLLBACK")
    advance_sequences(dst)
    return counts


def advance_sequences(dst: sqlite3.Connection) -> int:
    """Move every identity sequence past its column's highest id; return how many moved.

    Copied rows carry their ids, which a sequence does not see: without this the first new
    issue after the cut-over would be given id 1 and collide.
    """
    moved = 0
    columns = dst.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name"
    ).fetchall()
    for table, column in columns:
        seq = dst.execute(
            "SELECT pg_get_serial_sequence(?, ?)", (_quote(str(table)), str(column))
        ).fetchone()[0]
        if seq is None:
            continue
        top = dst.execute(f"SELECT max({_quote(str(column))}) FROM {_quote(str(table))}")
        highest = top.fetchone()[0]
        last, called = dst.execute(f"SELECT last_value, is_called FROM {seq}").fetchone()
        following = int(last) + 1 if called else int(last)
        if highest is not None and int(highest) >= following:
            dst.execute("SELECT setval(?, ?, true)", (str(seq), int(highest)))
            moved += 1
    return moved


def _listing(store: BlobStore) -> dict[str, int]:
    """Key -> stored size of every finished object under a store's root."""
    out: dict[str, int] = {}
    for key, size, _mtime in store.walk(""):
        if store.is_temp(key):
            continue
        try:
            validate_key(key)
        except InvalidBlobKey:
            continue  # not ours (a probe object, a stray file): not part of the install
        out[key] = size
    return out


def copy_blobs(source: BlobStore, target: BlobStore, *, workers: int = BLOB_WORKERS) -> BlobCount:
    """Copy every object the target lacks (or holds at another size); verify by listing."""
    wanted = _listing(source)
    present = _listing(target)
    todo = sorted(k for k, size in wanted.items() if present.get(k) != size)
    result = BlobCount(source=len(wanted), skipped=len(wanted) - len(todo))

    def copy(key: str) -> int | None:
        try:
            with source.open_raw(key) as fh:
                return target.put_stream(key, fh)
        except FileNotFoundError:
            return None  # purged on the source since the listing: nothing to carry over
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise TransferFailed(
                f"copying blob {key}: {type(exc).__name__} {reason}".rstrip()
            ) from None

    vanished: set[str] = set()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="retrospec-copy") as pool:
        for key, written in zip(todo, pool.map(copy, todo), strict=True):
            if written is None:
                vanished.add(key)
            else:
                result.copied += 1
                result.bytes_copied += written
    after = _listing(target)
    result.source = len(wanted) - len(vanished)
    result.target = len(after)
    result.missing = sorted(
        k for k, size in wanted.items() if k not in vanished and after.get(k) != size
    )
    return result
