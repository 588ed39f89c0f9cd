"""ingest-replay: ~9 KB rrweb chunk batches per second, blob then row, against the baseline."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from retrospec.bench.ingest import measure
from retrospec.bench.payloads import body_bytes, replay_body
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    at_least,
    at_most,
    running,
    start_baseline,
    start_retrospec,
)

TARGET_CHUNKS = 10_000.0


def _rows_without_blob(data_dir: Path) -> int:
    """Chunk rows whose blob is missing or ends before their range (segments hold many rows)."""
    conn = sqlite3.connect(f"file:{data_dir / 'retrospec.sqlite3'}?mode=ro", uri=True)
    try:
        keys = conn.execute(
            "SELECT blob_key, count(*), max(coalesce(blob_offset + blob_length, 0)) FROM chunks "
            "WHERE blob_key IS NOT NULL GROUP BY blob_key"
        ).fetchall()
    finally:
        conn.close()
    missing = 0
    for key, rows, end in keys:
        path = data_dir / "blobs" / str(key)
        if not path.is_file() or path.stat().st_size < int(end):
            missing += int(rows)
    return missing


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Saturation chunk batches/s for RetroSpec and the baseline (zstd, segment file, row)."""
    body = replay_body()
    size = body_bytes(body)
    with (
        running(start_baseline(ctx, "replay-baseline")) as base,
        running(start_retrospec(ctx, "replay-retrospec", jobs=False)) as rs,
    ):
        assert isinstance(rs, RetrospecServer)
        b = measure(ctx, base, "/chunk", body, table="chunks")
        ctx.log(f"baseline: {b.load.batches_per_s:,.0f} chunks/s, rows {b.rows:,}")
        r = measure(ctx, rs, rs.ingest_path, body, table="chunks")
        ctx.log(f"retrospec: {r.load.batches_per_s:,.0f} chunks/s, rows {r.rows:,}")
        without_blob = _rows_without_blob(rs.data_dir)
    res.add(
        Figure(
            "chunks_per_s",
            "replay chunks/s",
            r.durable_events_per_s,
            "chunks/s",
            target=at_least(TARGET_CHUNKS),
            baseline=b.durable_events_per_s,
        )
    )
    res.add(
        Figure(
            "mb_per_s",
            "raw event data ingested",
            r.durable_events_per_s * size / 1e6,
            "MB/s",
            baseline=b.durable_events_per_s * size / 1e6,
        )
    )
    for p in (50, 99):
        res.add(
            Figure(
                f"p{p}_ms_saturated",
                f"p{p} saturated",
                r.load.percentile(p),
                "ms",
                baseline=b.load.percentile(p),
                higher_is_better=False,
            )
        )
    res.add(
        Figure(
            "cpu_s_per_10k",
            "CPU s / 10k chunks",
            r.cpu_per_10k,
            "CPU s",
            baseline=b.cpu_per_10k,
            higher_is_better=False,
        )
    )
    res.add(
        Figure(
            "acked_not_stored",
            "acked, not stored",
            float(r.missing + b.missing + without_blob),
            "chunks",
            target=at_most(0, "0"),
            note="rows missing, or rows whose blob (segment range) is missing",
        )
    )
    res.notes.append(
        f"each batch carries {size:,} bytes of JSON ({size - 600:,}+ of rrweb events); the "
        "baseline does the same work: msgspec decode, zstd level 3, one segment file per writer "
        "group (temp file + rename), one row per chunk."
    )
