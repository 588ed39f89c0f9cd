"""ingest-replay: ~9 KB rrweb chunk batches per second, blob then row, against the baseline."""

from __future__ import annotations

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


def _blob_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*.zst") if p.is_file())


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Saturation chunk batches/s for RetroSpec and the baseline (zstd + file + row each)."""
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
        blobs = _blob_files(rs.data_dir / "blobs" / "chunks")
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
            float(r.missing + b.missing + max(0, r.rows - blobs)),
            "chunks",
            target=at_most(0, "0"),
            note="rows missing, or rows whose blob file is missing",
        )
    )
    res.notes.append(
        f"each batch carries {size:,} bytes of JSON ({size - 600:,}+ of rrweb events); the "
        "baseline does the same work: msgspec decode, zstd level 3, temp file + rename, one row."
    )
