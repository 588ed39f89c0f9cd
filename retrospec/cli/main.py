"""The `retrospec` command: the root app; every command module registers its own commands.

Command modules never import this one: they get the app through register(app) and share
config state through cli/common.py.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from retrospec import __version__, console
from retrospec.cli import (
    alerts,
    bench,
    issues,
    jobs,
    releases,
    server,
    sessions,
    sites,
    sourcemaps,
    tokens,
    transfer,
    users,
)
from retrospec.cli.common import ConfigOpt, state
from retrospec.errors import RetrospecError

app = typer.Typer(
    name="retrospec",
    help="Self-hosted session replay and grouped front-end failures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    """RetroSpec: session replay plus grouped front-end failures, in one process on SQLite."""
    if version:
        console.print_text(f"retrospec {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        console.print_text(ctx.get_help())
        raise typer.Exit(2)
    state.config = config


for _module in (
    server,
    sites,
    sourcemaps,
    releases,
    bench,
    issues,
    sessions,
    jobs,
    users,
    alerts,
    tokens,
    transfer,
):
    _module.register(app)


def main() -> None:
    """Entry point: run the CLI, turning RetroSpec errors into one line and an exit code."""
    try:
        rc = app(standalone_mode=False)
    except RetrospecError as exc:
        console.error(exc.message)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.error("aborted")
        sys.exit(1)
    except typer.TyperException as exc:
        # Usage errors from the parser (bad option, missing argument): typer's usage line plus
        # the problem, exit code 2 (their exit_code).
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            console.error(exc.message)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
