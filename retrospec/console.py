"""Terminal output: the only module that imports rich (tables, JSON, one-line errors)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# rich drops colour and styles by itself when stdout is not a terminal (pipes, cron, files).
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, never styled."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(
    columns: Sequence[str | tuple[str, dict[str, Any]]],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """A table readable at 80 columns; column options go to rich's add_column."""
    materialised = [list(r) for r in rows]
    if not materialised:
        out.print(escape(empty))
        return
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        if isinstance(column, tuple):
            table.add_column(column[0], **column[1])
        else:
            table.add_column(column)
    for row in materialised:
        table.add_row(*("" if v is None else escape(str(v)) for v in row))
    out.print(table)


def print_text(text: str, *, style: str | None = None) -> None:
    """Plain or styled text on stdout (markup in text is not interpreted)."""
    out.print(escape(text), style=style, soft_wrap=True)


def print_markdown_source(text: str) -> None:
    """Markdown source, verbatim (for pasting into a bug tracker)."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def print_pairs(pairs: Iterable[tuple[str, Any]]) -> None:
    """Aligned 'label  value' lines."""
    items = [(k, "" if v is None else str(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    for key, value in items:
        out.print(f"[bold]{escape(key.ljust(width))}[/bold]  {escape(value)}")


def error(message: str) -> None:
    """One line on stderr saying what went wrong and what to do."""
    # soft_wrap: one line whatever the terminal's width, so scripts can grep it.
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)


def warn(message: str) -> None:
    """One line on stderr for something the user should know."""
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def success(message: str) -> None:
    """A confirmation line on stdout."""
    out.print(f"[green]{escape(message)}[/green]")
