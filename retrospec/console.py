"""Terminal output: the only module that imports rich (tables, JSON, one-line errors).

Every string that reaches the terminal goes through safetext.for_terminal first: failure
messages and titles come from browsers, and an escape sequence in one must never reach a
terminal raw. When stdout is not a terminal (pipes, cron, files), tables become tab-separated
lines with every value whole, like `gh`, so they can be grepped and cut.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from retrospec.safetext import for_terminal

# rich drops colour and styles by itself when stdout is not a terminal (pipes, cron, files).
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)
# JSON escapes C0 controls itself; C1 controls and bidi marks survive ensure_ascii=False.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _safe(value: Any, *, newlines: bool = True) -> str:
    return for_terminal("" if value is None else str(value), newlines=newlines)


def is_terminal() -> bool:
    """Whether stdout is a terminal (tables fit it) rather than a pipe or file (tables are TSV)."""
    return bool(out.is_terminal)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, never styled."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    # One value per cell and one row per line, whatever the value holds.
    return _safe(" ".join(("" if value is None else str(value)).split()), newlines=False)


def print_table(
    columns: Sequence[str | tuple[str, dict[str, Any]]],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """A table readable at 80 columns; column options go to rich's add_column.

    Not on a terminal: a header line and one tab-separated line per row, values whole.
    """
    materialised = [list(r) for r in rows]
    names = [c[0] if isinstance(c, tuple) else c for c in columns]
    if not is_terminal():
        if not materialised:
            sys.stdout.write(_safe(empty) + "\n")
        else:
            lines = ["\t".join(_cell(n) for n in names)]
            lines += ["\t".join(_cell(v) for v in row) for row in materialised]
            sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        return
    if not materialised:
        out.print(escape(_safe(empty)))
        return
    table = Table(
        title=escape(_safe(title)) if title else None,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for column in columns:
        if isinstance(column, tuple):
            table.add_column(escape(_cell(column[0])), **column[1])
        else:
            table.add_column(escape(_cell(column)))
    for row in materialised:
        table.add_row(*(escape(_cell(v)) for v in row))
    out.print(table)


def print_text(text: str, *, style: str | None = None) -> None:
    """Plain or styled text on stdout (markup in text is not interpreted)."""
    out.print(escape(_safe(text)), style=style, soft_wrap=True)


def print_markdown_source(text: str) -> None:
    """Markdown source, verbatim but for control characters (for pasting into a bug tracker)."""
    safe = _safe(text)
    sys.stdout.write(safe if safe.endswith("\n") else safe + "\n")
    sys.stdout.flush()


def print_pairs(pairs: Iterable[tuple[str, Any]]) -> None:
    """Aligned 'label  value' lines."""
    items = [(_safe(k, newlines=False), _safe(v, newlines=False)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    for key, value in items:
        out.print(f"[bold]{escape(key.ljust(width))}[/bold]  {escape(value)}", soft_wrap=True)


def error(message: str) -> None:
    """One line on stderr saying what went wrong and what to do."""
    # soft_wrap: one line whatever the terminal's width, so scripts can grep it.
    err.print(f"[red]error:[/red] {escape(_safe(message, newlines=False))}", soft_wrap=True)


def warn(message: str) -> None:
    """One line on stderr for something the user should know."""
    err.print(f"[yellow]warning:[/yellow] {escape(_safe(message, newlines=False))}", soft_wrap=True)


def success(message: str) -> None:
    """A confirmation line on stdout."""
    out.print(f"[green]{escape(_safe(message))}[/green]", soft_wrap=True)
