"""purge: expired artifacts removed per second by retention.purge on really ingested data."""

from __future__ import annotations

import time
import uuid

from retrospec.bench.loadgen import LoadSpec, run_load
from retrospec.bench.payloads import failure_body, replay_body
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    at_most,
    running,
    start_retrospec,
)
from retrospec.jobs.context import JobContext
from retrospec.scheduler import run_job
from retrospec.settings import load_settings
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Ingest chunks and failures, build replays and clusters, then purge everything as expired."""
    seconds = 1.0 if ctx.quick else 10.0
    with running(start_retrospec(ctx, "purge", jobs=False)) as rs:
        assert isinstance(rs, RetrospecServer)
        for body in (replay_body(), failure_body(10)):
            spec = LoadSpec(
                host="127.0.0.1",
                port=rs.port,
                path=rs.ingest_path,
                body=body,
                run_id="g" + uuid.uuid4().hex[:10],
                connections=ctx.connections,
                workers=ctx.workers,
                duration=seconds,
                warmup=0.0,
            )
            run_load(spec)
        data_dir = rs.data_dir
    settings = load_settings(None, env={}, overrides={"data_dir": str(data_dir)}).settings
    conn = connect(settings.db_path)
    try:
        job = JobContext(
            settings=settings,
            blobs=BlobStore(settings.effective_blob_url),
            write=DirectWriter(conn).call,
        )
        for name in ("replays", "cluster"):
            t0 = time.monotonic()
            result = run_job(job, name)
            ctx.log(f"{name} job: {result.items:,} items in {time.monotonic() - t0:.1f} s")
        chunks = conn.execute("SELECT count(*) FROM chunks WHERE blob_key IS NOT NULL").fetchone()[
            0
        ]
        ctx.log(f"{chunks:,} chunk blobs to expire")
        from retrospec.retention import purge

        t0 = time.monotonic()
        report = purge(job, older_than_s=0.0, now=int(time.time() * 1000) + 1000)
        elapsed = time.monotonic() - t0
        left = conn.execute("SELECT count(*) FROM chunks WHERE blob_key IS NOT NULL").fetchone()[0]
    finally:
        conn.close()
    ctx.log(f"purge: {report.summary()}")
    res.add(
        Figure("artifacts_per_s", "artifacts purged/s", report.artifacts / elapsed, "artifacts/s")
    )
    res.add(Figure("artifacts", "artifacts purged", float(report.artifacts), "artifacts"))
    res.add(Figure("chunks", "chunk blobs purged", float(report.chunks), "chunks"))
    res.add(Figure("replays", "replay artifacts purged", float(report.replays), "replays"))
    res.add(Figure("payloads", "failure payloads purged", float(report.payloads), "payloads"))
    res.add(Figure("mb_freed", "blob data freed", report.blob_bytes / 1e6, "MB"))
    res.add(Figure("seconds", "purge run time", elapsed, "s", higher_is_better=False))
    res.add(
        Figure(
            "chunks_left", "expired chunk blobs left", float(left), "chunks", target=at_most(0, "0")
        )
    )
    res.notes.append(
        "data ingested through the server, replay and cluster jobs run, then retention.purge "
        "with everything expired (older_than 0); no §7 target, reported for sizing cron runs."
    )
