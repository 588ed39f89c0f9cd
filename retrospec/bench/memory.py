"""memory: RSS of `retrospec serve` (jobs on) idle, at saturation, and drift over a long run."""

from __future__ import annotations

import time

from retrospec.bench.ingest import saturation
from retrospec.bench.loadgen import LoadSpec, run_load
from retrospec.bench.payloads import failure_body, replay_body
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    at_most,
    http_get,
    running,
    start_retrospec,
)

MB = 1024 * 1024
TARGET_IDLE_MB = 80.0
TARGET_SATURATED_MB = 250.0


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Sample RSS every 0.25 s through idle, saturated and long half-load phases."""
    half = saturation(ctx) / 2
    with running(start_retrospec(ctx, "memory", jobs=True)) as rs:
        assert isinstance(rs, RetrospecServer)
        for _ in range(20):
            http_get(rs.port, "/healthz")
        time.sleep(1.0 if ctx.quick else 5.0)
        idle = rs.rss() / MB
        peak = [idle]

        def sample() -> None:
            peak[0] = max(peak[0], rs.rss() / MB)

        # Saturation: failures (batch 10) and replay chunks, closed loop, jobs catching up.
        for body in (failure_body(10), replay_body()):
            spec = LoadSpec(
                host="127.0.0.1",
                port=rs.port,
                path=rs.ingest_path,
                body=body,
                run_id=f"m{time.monotonic_ns()}",
                connections=ctx.connections,
                workers=ctx.workers,
                duration=ctx.duration,
                warmup=ctx.warmup,
            )
            run_load(spec, sampler=sample)
        saturated = peak[0]
        ctx.log(f"RSS idle {idle:.1f} MB, peak at saturation {saturated:.1f} MB")
        # Drift: a longer run at half of saturation, RSS sampled throughout.
        long_s = 4.0 if ctx.quick else max(60.0, ctx.duration * 4)
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()

        def drift_sample() -> None:
            samples.append((time.monotonic() - t0, rs.rss() / MB))

        spec = LoadSpec(
            host="127.0.0.1",
            port=rs.port,
            path=rs.ingest_path,
            body=failure_body(1),
            run_id=f"d{time.monotonic_ns()}",
            connections=64,
            workers=ctx.workers,
            duration=long_s,
            warmup=0.0,
            rate=half,
        )
        run_load(spec, sampler=drift_sample)
        if not rs.alive():
            raise RuntimeError("the server died during the memory run")
    window = [s for s in samples if s[0] >= samples[0][0] + 1.0] if samples else []
    if len(window) < 4:
        window = samples
    fifth = max(1, len(window) // 5)
    early = sum(v for _, v in window[:fifth]) / fifth
    late = sum(v for _, v in window[-fifth:]) / fifth
    minutes = max(1e-9, (window[-1][0] - window[0][0]) / 60) if window else 1.0
    drift = late - early
    ctx.log(f"drift over {minutes * 60:.0f} s at half load: {drift:+.1f} MB")
    res.add(
        Figure(
            "rss_idle_mb",
            "RSS idle (jobs on)",
            idle,
            "MB",
            target=at_most(TARGET_IDLE_MB),
            higher_is_better=False,
        )
    )
    res.add(
        Figure(
            "rss_saturated_mb",
            "RSS peak at saturation",
            saturated,
            "MB",
            target=at_most(TARGET_SATURATED_MB),
            higher_is_better=False,
        )
    )
    res.add(
        Figure("rss_drift_mb", "RSS drift, long half-load run", drift, "MB", higher_is_better=False)
    )
    res.add(
        Figure(
            "rss_drift_mb_per_min",
            "RSS drift rate",
            drift / minutes,
            "MB/min",
            higher_is_better=False,
        )
    )
    res.notes.append(
        f"saturation: {ctx.duration:g} s of 10-failure batches then {ctx.duration:g} s of ~9 KB "
        f"chunks, closed loop; drift: {long_s:g} s at {half:,.0f} batches/s, mean of the last "
        "fifth of samples minus the first fifth."
    )
