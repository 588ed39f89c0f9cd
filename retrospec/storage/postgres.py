"""PostgreSQL backend: a psycopg 3 connection with the sqlite3 surface the code uses.

The code's SQL is written for SQLite with portable forms (see ARCHITECTURE.md); this module
translates each statement once (cached): `?` placeholders, `INSERT OR IGNORE`, 2-argument
max/min, `BEGIN IMMEDIATE`, LIKE (ASCII case-insensitive in SQLite). Migrations are SQLite DDL,
translated mechanically by translate_ddl, with PG_OVERRIDES for the few statements that cannot.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper, Loader

from retrospec.errors import ConfigError
from retrospec.settings import redact_url

CONNECT_TIMEOUT_S = 5
# Held (as a transaction-level advisory lock) while migrations run: two processes starting on
# one database at once must not both apply a migration.
MIGRATION_LOCK = 0x52455452  # "RETR"
# SQLite's NOCASE for `COLLATE NOCASE` columns (user names): an ICU collation that ignores case.
NOCASE_COLLATION = (
    "CREATE COLLATION IF NOT EXISTS nocase "
    "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
)

# Migration statements that no mechanical rule turns into PostgreSQL (exact SQLite text, after
# strip) -> the PostgreSQL statement, or "" to skip it.
PG_OVERRIDES: dict[str, str] = {
    "UPDATE sites SET dsn_key = lower(hex(randomblob(16)));": (
        "UPDATE sites SET dsn_key = replace(gen_random_uuid()::text, '-', '')"
    ),
}

_LITERAL_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_MASK_RE = re.compile(r"\x00(\d+)\x00")
_MINMAX_RE = re.compile(r"\b(max|min)\s*\(", re.IGNORECASE)
_INSERT_OR_IGNORE_RE = re.compile(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_INSERT_OR_REPLACE_RE = re.compile(r"\bINSERT\s+OR\s+REPLACE\b", re.IGNORECASE)
_RETURNING_RE = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_BEGIN_RE = re.compile(r"\A\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\s*;?\s*\Z", re.IGNORECASE)
_LIKE_RE = re.compile(r"\bLIKE\b", re.IGNORECASE)


def _mask(sql: str) -> tuple[str, list[str]]:
    literals: list[str] = []

    def keep(m: re.Match[str]) -> str:
        literals.append(m.group(0))
        return f"\x00{len(literals) - 1}\x00"

    return _LITERAL_RE.sub(keep, sql), literals


def _unmask(sql: str, literals: list[str]) -> str:
    return _MASK_RE.sub(lambda m: literals[int(m.group(1))], sql)


def _top_level_commas(text: str, start: int) -> tuple[int, int]:
    """(commas at depth 0, index of the closing parenthesis) of the call opened before start."""
    depth = 0
    commas = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return commas, i
            depth -= 1
        elif ch == "," and depth == 0:
            commas += 1
    raise ValueError("unbalanced parentheses in SQL")


def _scalar_minmax(sql: str) -> str:
    """SQLite's 2-argument max(a, b)/min(a, b) are GREATEST/LEAST in PostgreSQL."""
    out = []
    pos = 0
    for m in _MINMAX_RE.finditer(sql):
        if m.start() < pos:
            continue
        commas, _close = _top_level_commas(sql, m.end())
        if commas == 0:
            continue  # the aggregate
        out.append(sql[pos : m.start()])
        out.append("GREATEST(" if m.group(1).lower() == "max" else "LEAST(")
        pos = m.end()
    out.append(sql[pos:])
    return "".join(out)


_FROM_SUBQUERY_RE = re.compile(r"\b(FROM|JOIN)\s*\(\s*SELECT\b", re.IGNORECASE)
_NOT_ALIAS = {
    "WHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "JOIN", "LEFT", "INNER", "CROSS", "ON",
    "UNION", "HAVING", "WINDOW", "EXCEPT", "INTERSECT", "RETURNING",
}  # fmt: skip
_WORD_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


def _alias_subqueries(sql: str) -> str:
    """PostgreSQL before 16 wants an alias on every subquery in FROM; SQLite does not."""
    closes = []
    for m in _FROM_SUBQUERY_RE.finditer(sql):
        open_paren = sql.index("(", m.start())
        _commas, close = _top_level_commas(sql, open_paren + 1)
        word = _WORD_RE.match(sql, close + 1)
        if word is None or word.group(1).upper() in _NOT_ALIAS:
            closes.append(close + 1)
    for n, at in enumerate(sorted(closes, reverse=True)):
        sql = f"{sql[:at]} AS _sub{n + 1}{sql[at:]}"
    return sql


@functools.lru_cache(maxsize=2048)
def translate(sql: str, params: bool = True) -> str:
    """One SQLite-flavoured statement of the code as PostgreSQL (psycopg placeholders)."""
    begin = _BEGIN_RE.match(sql)
    if begin:
        return "BEGIN"
    masked, literals = _mask(sql)
    if _INSERT_OR_REPLACE_RE.search(masked):
        raise ValueError("INSERT OR REPLACE has no PostgreSQL form: use ON CONFLICT DO UPDATE")
    if _INSERT_OR_IGNORE_RE.search(masked):
        masked = _INSERT_OR_IGNORE_RE.sub("INSERT INTO", masked)
        returning = _RETURNING_RE.search(masked)
        body = masked.rstrip().rstrip(";")
        if returning:
            body = (
                f"{masked[: returning.start()].rstrip()} ON CONFLICT DO NOTHING "
                f"{masked[returning.start() :]}"
            )
        else:
            body = f"{body} ON CONFLICT DO NOTHING"
        masked = body
    masked = _scalar_minmax(masked)
    masked = _alias_subqueries(masked)
    masked = _LIKE_RE.sub("ILIKE", masked)
    if params:
        # psycopg reads % as the start of a placeholder, literals included.
        masked = masked.replace("%", "%%").replace("?", "%s")
        literals = [lit.replace("%", "%%") for lit in literals]
    return _unmask(masked, literals)


_IDENTITY_RE = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b(?!\s*\()", re.IGNORECASE)
_DDL_TYPES = [
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT\s+ROWID\b", re.IGNORECASE), ")"),
]


def _without_comments(statement: str) -> str:
    lines = [line for line in statement.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def translate_ddl(statement: str) -> str:
    """One SQLite migration statement as PostgreSQL ("" means: nothing to run).

    Every *_at column is epoch milliseconds, so INTEGER becomes BIGINT throughout; an
    INTEGER PRIMARY KEY (SQLite's rowid alias) becomes a BIGINT identity column.
    """
    key = _without_comments(statement)
    if key in PG_OVERRIDES:
        return PG_OVERRIDES[key]
    masked, literals = _mask(key)
    masked = _IDENTITY_RE.sub("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", masked)
    for pattern, replacement in _DDL_TYPES:
        masked = pattern.sub(replacement, masked)
    return _unmask(masked, literals).rstrip().rstrip(";")


class Row(tuple[Any, ...]):
    """A result row readable by index and by column name, like sqlite3.Row."""

    _index: dict[str, int] = {}
    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """Column names, in order."""
        return list(self._names)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_names": names, "_index": {n: i for i, n in enumerate(names)}})


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    if desc is None:
        return tuple
    return _row_class(tuple(d.name for d in desc))


class _NumericLoader(Loader):
    # sum() of BIGINT is NUMERIC in PostgreSQL; SQLite gives an int (or a float).
    def load(self, data: Any) -> Any:
        text = bytes(data)
        if b"." in text or b"e" in text or b"E" in text or b"N" in text:
            return float(text)
        return int(text)


class _BoolAsInt(Dumper):
    # SQLite stores booleans as 0/1 in INTEGER columns, and the code passes Python bools, to
    # columns and to conditions alike: an untyped '1'/'0' is read as whichever the place needs.
    oid = 0  # unknown: PostgreSQL infers the type from where the value goes

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class Cursor:
    """The part of sqlite3.Cursor the code uses, over a psycopg cursor."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        """Rows the statement changed (executemany: the sum over its rows)."""
        return int(self._cur.rowcount)

    @property
    def description(self) -> Any:
        """Column descriptions of a query."""
        return self._cur.description

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._cur.description is None:
            return None
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        if self._cur.description is None:
            return []
        return self._cur.fetchall()

    def fetchmany(self, size: int) -> list[Any]:
        """Up to size more rows."""
        if self._cur.description is None:
            return []
        return self._cur.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        if self._cur.description is None:
            return iter(())
        return iter(self._cur)


class PgConnection:
    """A psycopg connection in autocommit mode that speaks the code's SQLite SQL.

    Transactions are the code's own BEGIN/COMMIT/SAVEPOINT statements, as on SQLite.
    """

    backend = "postgres"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._lock = threading.Lock()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        """Run one statement; returns a cursor holding its rows."""
        query = translate(sql, bool(params))
        cur = self.raw.cursor()
        cur.execute(query.encode(), params or None)
        return Cursor(cur)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        """Run one statement per parameter row (pipelined by psycopg)."""
        cur = self.raw.cursor()
        cur.executemany(translate(sql, True).encode(), seq)
        return Cursor(cur)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (or failed and not yet rolled back)."""
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    @property
    def closed(self) -> bool:
        """Whether the connection is closed or broken."""
        return bool(self.raw.closed or self.raw.broken)

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()


def connect(
    url: str, *, readonly: bool = False, timeout: float = CONNECT_TIMEOUT_S
) -> PgConnection:
    """Open a connection to url with the settings every RetroSpec connection uses."""
    try:
        raw: psycopg.Connection[Any] = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
            row_factory=_row_factory,
            application_name="retrospec",
        )
    except psycopg.OperationalError as exc:
        # One line naming the setting, whatever the cause (unreachable, credentials, no
        # such database); the URL without its password.
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"database_url: cannot connect to {redact_url(url)}: {reason}") from None
    raw.adapters.register_loader("numeric", _NumericLoader)
    raw.adapters.register_dumper(bool, _BoolAsInt)
    # Times are epoch milliseconds everywhere; UTC keeps any date function the database uses
    # in agreement with SQLite.
    raw.execute("SET TIME ZONE 'UTC'")
    if readonly:
        raw.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    return PgConnection(raw)
