"""What the terminal commands share: config state, options, database access, fitted tables.

Command modules import this one (never cli/main.py): main.py imports them and calls their
register(app), so the root knows its groups and no group knows the root.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from retrospec import console
from retrospec.clock import iso, now_ms
from retrospec.errors import NotFound
from retrospec.settings import LoadedSettings, Settings, load_settings

T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (else $RETROSPEC_CONFIG, else ./retrospec.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]
SiteOpt = Annotated[str | None, typer.Option("--site", help="Only this site (name or id).")]
WIDE = 110  # terminal width from which tables show whole session ids
TITLE_CHARS = 120  # before rich fits the title column to the terminal with an ellipsis


class State:
    """Options of the root command (set by its callback), read by every subcommand."""

    config: Path | None = None


state = State()


def load(**overrides: Any) -> LoadedSettings:
    """Effective settings for this invocation (flags beat env beat file beat defaults)."""
    from retrospec.storage.blobs import set_store_options

    loaded = load_settings(state.config, overrides=overrides)
    set_store_options(loaded.settings.blob_options)
    return loaded


def with_db(loaded: LoadedSettings, fn: Callable[[Any], T], *, write: bool = False) -> T:
    """Open the database (migrating it if needed), run fn(conn) and close it."""
    from retrospec.storage.db import DirectWriter, connect
    from retrospec.storage.migrations import prepare_database

    settings = loaded.settings
    prepare_database(settings.database, synchronous=settings.sqlite_synchronous)
    check_blobs(settings)
    conn = connect(settings.database, readonly=not write)
    try:
        if write:
            return DirectWriter(conn).call(fn)
        return fn(conn)
    finally:
        conn.close()


def require_db(settings: Settings) -> None:
    """Fail with a hint instead of creating an empty database in the wrong directory."""
    from retrospec.storage.migrations import prepare_database

    if not settings.uses_postgres and not settings.db_path.exists():
        raise NotFound(
            f"no RetroSpec database at {settings.db_path}; run this where retrospec.toml is, "
            "or pass --config / set RETROSPEC_DATA_DIR"
        )
    prepare_database(settings.database, synchronous=settings.sqlite_synchronous)
    check_blobs(settings)


def check_blobs(settings: Settings) -> None:
    """Fail with one line naming blob_url when a remote blob store is missing or read-only."""
    from retrospec.storage.blobs import BlobStore

    if settings.blob_options:
        BlobStore(settings.effective_blob_url, settings.blob_options).check()


def read(settings: Settings, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run a read query function (the dashboard's own) on one read-only connection."""
    from retrospec.storage.db import reading

    require_db(settings)
    with reading(settings.database) as conn:
        return fn(conn)


def base_url(settings: Settings) -> str:
    """Where links point: public_url, else the address the last `retrospec serve` announced
    (so `--port` or `--host` given to serve show up here), else host and port from settings."""
    if settings.public_url or (not settings.uses_postgres and not settings.db_path.exists()):
        return settings.base_url
    from retrospec.startup import served_url
    from retrospec.storage.db import reading

    try:
        with reading(settings.database) as conn:
            return served_url(conn) or settings.base_url
    except Exception:  # sqlite3 or psycopg: any failure falls back to the settings' URL
        return settings.base_url


def ago(ms: int | None, now: int | None = None) -> str:
    """'just now', '42s ago', '3m ago', '5h ago', '2d ago', then a date."""
    if ms is None:
        return ""
    seconds = ((now_ms() if now is None else now) - ms) / 1000
    if seconds < 5:
        return "just now"  # also absorbs small clock differences between processes
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    if seconds < 60 * 86400:
        return f"{int(seconds // 86400)}d ago"
    return (iso(ms) or "")[:10]


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KB' (powers of 1024, like du -h)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def short_id(value: str) -> str:
    """A session id as tables show it: whole on wide terminals and in pipes, else 8 characters."""
    if not console.is_terminal() or int(console.out.width) >= WIDE or len(value) <= 13:
        return value
    return value[:8]


def one_line(text: str | None, limit: int = TITLE_CHARS) -> str:
    """Collapse whitespace (stack-ish titles carry newlines) and cap the length."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


Column = tuple[str, dict[str, Any]]


def fit_table(
    columns: list[Column],
    rows: list[tuple[Any, ...]],
    *,
    flex: str,
    optional: tuple[str, ...] = (),
    comfortable: int = 40,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print a table at the terminal's width with one column taking the rest.

    rich squeezes every no_wrap column alike when a table is too wide, so the other columns get
    their content width here and only the flex column is cut, with an ellipsis. While the flex
    column is narrower than `comfortable`, headers switch to their "short" form and `optional`
    columns are dropped, in order; a column's "cut" option caps its values' length.
    When stdout is not a terminal, every column and every value is printed whole, tab-separated
    (console.print_table), so scripts can rely on it.
    """
    if not console.is_terminal():
        console.print_table([name for name, _ in columns], rows, title=None, empty=empty)
        return
    cells = [
        [
            one_line("" if v is None else str(v), columns[i][1]["cut"])
            if "cut" in columns[i][1]
            else ("" if v is None else str(v))
            for i, v in enumerate(row)
        ]
        for row in rows
    ]
    fi = [name for name, _ in columns].index(flex)
    names = [name for name, _ in columns]
    keep = list(range(len(columns)))

    def room() -> int:
        widths = (max([len(names[i]), *(len(r[i]) for r in cells)]) for i in keep if i != fi)
        return int(console.out.width) - sum(widths) - 3 * (len(keep) - 1)

    if room() < comfortable:
        names = [opts.get("short", name) for name, opts in columns]
    for name in optional:
        if room() >= comfortable:
            break
        keep.remove([n for n, _ in columns].index(name))
    width = min(max(12, room()), max([len(names[fi]), *(len(r[fi]) for r in cells)]))
    out_columns: list[Column] = []
    for i in keep:
        opts = {
            "no_wrap": True,
            **{k: v for k, v in columns[i][1].items() if k not in ("short", "cut")},
        }
        if i == fi:
            opts.update(min_width=width, max_width=width, overflow="ellipsis")
        out_columns.append((names[i], opts))
    out_rows = [tuple(one_line(r[i], width) if i == fi else r[i] for i in keep) for r in cells]
    console.print_table(out_columns, out_rows, title=title, empty=empty)
