"""`retrospec migrate-data`: copy this SQLite install (and its blobs) to PostgreSQL (and S3)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from retrospec import console
from retrospec.cli.common import JsonOpt, load, require_db
from retrospec.errors import RetrospecError, UsageError
from retrospec.settings import redact_url


def register(app: typer.Typer) -> None:
    """Add migrate-data to the root CLI."""
    app.command("migrate-data")(migrate_data)


class CountsDiffer(RetrospecError):
    """The copy ended with other counts on the target than in the source."""


def migrate_data(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Target PostgreSQL URL (postgresql://user:pass@host:5432/db).",
            show_default=False,
        ),
    ],
    blobs_to: Annotated[
        str | None,
        typer.Option(
            "--blobs-to",
            help="Target blob store (s3://bucket/prefix, uses the s3_* settings); "
            "default: blobs are not copied.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy the SQLite database (and blobs) this config points at; rerun to resume."""
    from retrospec.storage.blobs import BlobStore
    from retrospec.storage.db import connect, reading
    from retrospec.storage.transfer import (
        BlobCount,
        copy_blobs,
        copy_rows,
        open_target_blobs,
        prepare_target,
    )

    settings = load().settings
    if settings.uses_postgres:
        raise UsageError(
            "migrate-data copies a SQLite install, but database_url is set: run it with the "
            "old (SQLite) config and name the new database in --to"
        )
    if blobs_to is not None and blobs_to.rstrip("/") == settings.effective_blob_url.rstrip("/"):
        raise UsageError("--blobs-to is the blob store this install already uses")
    require_db(settings)  # the source exists and is migrated
    prepare_target(to)
    target_blobs = None
    if blobs_to is not None:
        options = dataclasses.replace(settings, blob_url=blobs_to).blob_options
        target_blobs = open_target_blobs(blobs_to, options)

    dst = connect(to)
    try:
        with reading(settings.database) as src:
            tables = copy_rows(src, dst)
    finally:
        dst.close()
    blobs: BlobCount | None = None
    if target_blobs is not None:
        source_blobs = BlobStore(settings.effective_blob_url, settings.blob_options)
        blobs = copy_blobs(source_blobs, target_blobs)

    ok = all(t.ok for t in tables) and (blobs is None or blobs.ok)
    report: dict[str, Any] = {
        "ok": ok,
        "to": redact_url(to),
        "blobs_to": blobs_to,
        "tables": [
            {"table": t.table, "source": t.source, "target": t.target, "copied": t.copied}
            for t in tables
        ],
        "blobs": None
        if blobs is None
        else {
            "source": blobs.source,
            "target": blobs.target,
            "copied": blobs.copied,
            "skipped": blobs.skipped,
            "bytes_copied": blobs.bytes_copied,
            "missing": len(blobs.missing),
        },
    }
    if json_out:
        console.print_json(report)
    else:
        rows: list[tuple[Any, ...]] = [
            (t.table, t.source, t.target, t.copied, "ok" if t.ok else "DIFFERS") for t in tables
        ]
        if blobs is not None:
            rows.append(
                (
                    "(blobs)",
                    blobs.source,
                    blobs.target,
                    blobs.copied,
                    "ok" if blobs.ok else "MISSING",
                )
            )
        console.print_table(
            ["table", "source", "target", "copied now", "check"],
            rows,
            title=f"SQLite {settings.db_path} -> {redact_url(to)}",
        )
    if not ok:
        differ = [t.table for t in tables if not t.ok]
        parts = [f"row counts differ in {', '.join(differ)}"] if differ else []
        if blobs is not None and not blobs.ok:
            parts.append(f"{len(blobs.missing)} blobs missing on the target")
        raise CountsDiffer(
            "copy incomplete: " + "; ".join(parts) + " (stop the server writing the SQLite "
            "file, then rerun migrate-data)"
        )
    if not json_out:
        copied = sum(t.copied for t in tables)
        tail = "" if blobs is None else f" and {blobs.copied} blobs"
        console.success(f"copied {copied} rows{tail}; every count matches")
