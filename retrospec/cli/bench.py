"""`retrospec bench`: measure ingest, pipeline, storage, memory, dashboard and purge."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from retrospec import console
from retrospec.bench.runner import BENCHMARKS
from retrospec.errors import RetrospecError, UsageError


def register(app: typer.Typer) -> None:
    """Add the bench command to the root CLI."""
    app.command("bench")(bench)


def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(help=f"Benchmarks to run (default: all): {', '.join(BENCHMARKS)}."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes, every benchmark in under two minutes.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds each load window lasts [default: 20, quick: 2]."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Load generator processes [default: 1 per 2 CPUs].")
    ] = None,
    connections: Annotated[
        int, typer.Option(help="Keep-alive connections the generator keeps busy.")
    ] = 48,
    workdir: Annotated[
        Path | None, typer.Option(help="Where data dirs and logs go [default: a temp dir].")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the data dirs and server logs afterwards.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the JSON results to this file.")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="PostgreSQL database the ingest-scale rows write into "
            "[default: a throwaway cluster from Debian's postgresql binaries].",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 3 when a target is missed (not in --quick).")
    ] = False,
) -> None:
    """Benchmark a real `retrospec serve` against a bare baseline (needs idle CPUs for figures)."""
    from retrospec.bench.runner import (
        BENCHMARKS,
        BenchContext,
        machine,
        make_workdir,
        print_results,
        results_json,
        run_benchmarks,
    )

    selected = names or list(BENCHMARKS)
    unknown = [n for n in selected if n not in BENCHMARKS]
    if unknown:
        raise UsageError(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    if database_url and not database_url.startswith(("postgresql://", "postgres://")):
        raise UsageError("--database-url must start with postgresql:// or postgres://")
    ctx = BenchContext(
        quick=quick,
        duration=duration or (2.0 if quick else 20.0),
        warmup=0.5 if quick else 2.0,
        workers=workers or max(1, (os.cpu_count() or 2) // 2),
        connections=connections,
        workdir=make_workdir(workdir),
        keep=keep,
        database_url=database_url,
    )
    info = machine()
    try:
        results = run_benchmarks(selected, ctx)
    finally:
        if not keep:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    doc = results_json(results, info, quick)
    if out is not None:
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    if json_out:
        console.print_json(doc)
    else:
        print_results(results, info)
        if keep:
            console.print_text(f"data dirs and server logs kept in {ctx.workdir}")
    crashed = [r.name for r in results if r.status == "error"]
    if crashed:
        raise RetrospecError(f"benchmark(s) crashed: {', '.join(crashed)}")
    missed = [f"{r.name}/{f.key}" for r in results for f in r.figures if f.met is False]
    if strict and not quick and missed:
        console.error(f"targets missed: {', '.join(missed)}")
        raise typer.Exit(3)
