"""ingest-failures and latency: durable failure ingest against the bare baseline, same run."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from retrospec.bench.loadgen import Body, LoadResult, LoadSpec, run_load
from retrospec.bench.payloads import failure_body, replay_body
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    Server,
    at_least,
    at_most,
    count_rows,
    running,
    start_baseline,
    start_retrospec,
)

TARGET_EVENTS = 5000.0
TARGET_RATIO = 0.70
TARGET_CPU_PER_10K = 4.0
TARGET_P99_MS = 20.0
# Open-loop (fixed-rate) windows use this many connections, RetroSpec and its control alike.
OPEN_LOOP_CONNECTIONS = 64


@dataclass(slots=True)
class Measured:
    """One load run against one server, checked against what SQLite holds afterwards."""

    load: LoadResult
    cpu_s: float
    rows: int
    # CPU of what serves beside the servers (PostgreSQL's processes), when measured.
    other_cpu_s: float = 0.0

    @property
    def missing(self) -> int:
        """Acknowledged events whose rows are not in the database (must be 0)."""
        return max(0, self.load.acked_events_total - self.rows)

    @property
    def durable_events_per_s(self) -> float:
        """Acknowledged-and-stored events per second in the window."""
        if self.load.acked_events_total == 0:
            return 0.0
        share = min(1.0, self.rows / self.load.acked_events_total)
        return self.load.events_per_s * share

    @property
    def cpu_per_10k(self) -> float:
        """Server CPU seconds per 10,000 events."""
        events = self.load.window_events
        return self.cpu_s / events * 10_000 if events else 0.0

    @property
    def all_cpu_per_10k(self) -> float:
        """Server plus database CPU seconds per 10,000 events."""
        events = self.load.window_events
        return (self.cpu_s + self.other_cpu_s) / events * 10_000 if events else 0.0


def measure(
    ctx: BenchContext,
    server: Server | Sequence[Server],
    path: str,
    body: Body,
    *,
    table: str | None = "failures",
    rate: float | None = None,
    connections: int | None = None,
    duration: float | None = None,
    other_cpu: Callable[[], float] | None = None,
) -> Measured:
    """Drive server with body; count server CPU in the window and the rows stored afterwards.

    Several servers are one deployment (processes on one database): the connections go
    round-robin over their ports and their CPU is summed. other_cpu() reads the CPU seconds of
    something else serving them (PostgreSQL), counted apart.
    """
    group = [server] if isinstance(server, Server) else list(server)
    run_id = "b" + uuid.uuid4().hex[:10]
    spec = LoadSpec(
        host="127.0.0.1",
        port=group[0].port,
        more_ports=tuple(s.port for s in group[1:]),
        path=path,
        body=body,
        run_id=run_id,
        connections=connections or ctx.connections,
        workers=ctx.workers,
        duration=duration or ctx.duration,
        warmup=ctx.warmup,
        rate=rate,
    )
    cpu: dict[str, float] = {}
    other: dict[str, float] = {}

    def edge(which: str) -> None:
        cpu[which] = sum(s.cpu_seconds() for s in group)
        if other_cpu is not None:
            other[which] = other_cpu()

    load = run_load(spec, on_window=edge)
    # Every server keeps the same schema (the baseline too); a replay chunk counts as one
    # event, so rows and acknowledged events compare directly for both tables.
    rows = count_rows(group[0].database, table, run_id) if table else load.acked_events_total
    return Measured(
        load=load,
        cpu_s=cpu["end"] - cpu["start"],
        rows=rows,
        other_cpu_s=other["end"] - other["start"] if other else 0.0,
    )


def describe(name: str, m: Measured) -> str:
    """One progress line for a measurement: rates, latency, durability, generator load."""
    bad = {k: v for k, v in m.load.statuses.items() if not 200 <= k < 300}
    extra = f", non-2xx {bad}" if bad else ""
    extra += f", connection errors {m.load.errors}" if m.load.errors else ""
    busy = m.load.generator_cpu_s / m.load.seconds if m.load.seconds else 0.0
    extra += f"; generator busy {busy:.0%} of a core"
    return (
        f"{name}: {m.load.events_per_s:,.0f} events/s ({m.load.batches_per_s:,.0f} batches/s), "
        f"p50 {m.load.percentile(50):.1f} ms, p99 {m.load.percentile(99):.1f} ms, "
        f"rows {m.rows:,} of {m.load.acked_events_total:,} acked{extra}"
    )


def run_failures(ctx: BenchContext, res: BenchResult) -> None:
    """Saturation throughput for batches of 1 and 10 failures, RetroSpec vs the baseline."""
    with (
        running(start_baseline(ctx, "ingest-baseline")) as base,
        running(start_retrospec(ctx, "ingest-retrospec", jobs=False)) as rs,
    ):
        assert isinstance(rs, RetrospecServer)
        null = measure(ctx, base, "/null", failure_body(1), table=None)
        ctx.log(describe("generator ceiling (baseline /null)", null))
        res.add(
            Figure(
                "generator_max_requests_per_s",
                "generator ceiling (/null)",
                null.load.batches_per_s,
                "req/s",
                target=at_least(TARGET_EVENTS),
                note="the generator alone, against an endpoint that does no work",
            )
        )
        for batch in (1, 10):
            body = failure_body(batch)
            b = measure(ctx, base, "/ingest", body)
            ctx.log(describe(f"baseline, batch {batch}", b))
            r = measure(ctx, rs, rs.ingest_path, body)
            ctx.log(describe(f"retrospec, batch {batch}", r))
            if batch == 1:
                ctx.shared["saturation_batches_per_s"] = r.load.batches_per_s
            tag = f"batch{batch}"
            res.add(
                Figure(
                    f"generator_vs_baseline_events_per_s_{tag}",
                    f"generator → baseline, batch {batch}",
                    b.durable_events_per_s,
                    "events/s",
                    target=at_least(TARGET_EVENTS),
                    note="the generator drives the bare baseline this hard",
                )
            )
            ev = res.add(
                Figure(
                    f"events_per_s_{tag}",
                    f"failures/s, batch {batch}",
                    r.durable_events_per_s,
                    "events/s",
                    target=at_least(TARGET_EVENTS),
                    baseline=b.durable_events_per_s,
                )
            )
            res.add(
                Figure(
                    f"baseline_ratio_{tag}",
                    f"share of baseline, batch {batch}",
                    (ev.ratio or 0.0) * 100,
                    "%",
                    target=at_least(TARGET_RATIO * 100, "≥ 70%"),
                )
            )
            res.add(
                Figure(
                    f"batches_per_s_{tag}",
                    f"requests/s, batch {batch}",
                    r.load.batches_per_s,
                    "req/s",
                    baseline=b.load.batches_per_s,
                )
            )
            for p in (50, 99):
                res.add(
                    Figure(
                        f"p{p}_ms_saturated_{tag}",
                        f"p{p} saturated, batch {batch}",
                        r.load.percentile(p),
                        "ms",
                        baseline=b.load.percentile(p),
                        higher_is_better=False,
                    )
                )
            res.add(
                Figure(
                    f"cpu_s_per_10k_{tag}",
                    f"CPU s / 10k, batch {batch}",
                    r.cpu_per_10k,
                    "CPU s",
                    target=at_most(TARGET_CPU_PER_10K),
                    baseline=b.cpu_per_10k,
                    higher_is_better=False,
                )
            )
            res.add(
                Figure(
                    f"acked_not_stored_{tag}",
                    f"acked, not stored, batch {batch}",
                    float(r.missing + b.missing),
                    "events",
                    target=at_most(0, "0"),
                    note="RetroSpec and baseline together; durability check",
                )
            )
    res.notes.append(
        f"{ctx.workers} generator process(es), {ctx.connections} keep-alive connections, "
        f"{ctx.duration:g} s windows after {ctx.warmup:g} s warm-up; jobs off; "
        "events/s counts only 2xx answers whose rows were found in SQLite afterwards."
    )


def saturation(ctx: BenchContext, *, jobs: bool = False) -> float:
    """Batches/s RetroSpec sustains with single-failure batches (measured once per invocation)."""
    name = "saturation_jobs_batches_per_s" if jobs else "saturation_batches_per_s"
    cached = ctx.shared.get(name)
    if cached:
        return float(cached)
    with running(
        start_retrospec(ctx, "saturation-jobs" if jobs else "saturation", jobs=jobs)
    ) as rs:
        assert isinstance(rs, RetrospecServer)
        m = measure(ctx, rs, rs.ingest_path, failure_body(1))
    ctx.shared[name] = m.load.batches_per_s
    return m.load.batches_per_s


def baseline_at(ctx: BenchContext, rate: float, body: Body, name: str) -> Measured:
    """The bare baseline driven open loop at `rate` with `body`: the same durable write's
    latency on this machine, in this run, at that load. It is the control for the p99 rows,
    which this VM's run-to-run spread (7 to 49 ms with the jobs off) makes unreadable alone."""
    with running(start_baseline(ctx, name)) as base:
        b = measure(ctx, base, "/ingest", body, rate=rate, connections=OPEN_LOOP_CONNECTIONS)
    ctx.log(describe(f"bare baseline at {rate:,.0f} req/s", b))
    return b


def run_latency(ctx: BenchContext, res: BenchResult) -> None:
    """p50/p99 at half of saturation (open loop), with jobs off and with jobs running, each
    beside the bare baseline driven at the same rate.

    Saturation is measured in the same configuration as the latency it anchors: with jobs on,
    the jobs process what ingest takes (every batch carries a failure to cluster), so they share
    the CPU and the saturation point is lower.
    """
    half = saturation(ctx) / 2
    ctx.log(f"half of saturation, jobs off: {half:,.0f} batches/s (1 failure each)")
    body = failure_body(1)
    figures: list[tuple[str, str, Measured, Measured]] = []
    with running(start_retrospec(ctx, "latency-nojobs", jobs=False)) as rs:
        assert isinstance(rs, RetrospecServer)
        m = measure(ctx, rs, rs.ingest_path, body, rate=half, connections=OPEN_LOOP_CONNECTIONS)
        ctx.log(describe("jobs off", m))
    b = baseline_at(ctx, half, body, "latency-baseline")
    figures.append(("nojobs", "jobs off", m, b))
    half = saturation(ctx, jobs=True) / 2
    ctx.log(f"half of saturation, jobs on: {half:,.0f} batches/s (1 failure each)")
    with running(start_retrospec(ctx, "latency-jobs", jobs=True)) as rs:
        assert isinstance(rs, RetrospecServer)
        # A modest stream of replay chunks beside the failures so the replay job has work too.
        side = threading.Thread(
            target=_background_replay, args=(ctx, rs, min(100.0, half / 10)), daemon=True
        )
        side.start()
        m = measure(ctx, rs, rs.ingest_path, body, rate=half, connections=OPEN_LOOP_CONNECTIONS)
        side.join()
        ctx.log(describe("jobs on", m))
        res.notes.append(
            "jobs running: cluster and replay jobs active; a side stream of ~9 KB replay chunks "
            "ran during the window."
        )
    b = baseline_at(ctx, half, body, "latency-baseline-jobs")
    figures.append(("jobs", "jobs running", m, b))
    for key, label, m, b in figures:
        for p in (50, 99):
            res.add(
                Figure(
                    f"p{p}_ms_half_saturation_{key}",
                    f"p{p} at half load, {label}",
                    m.load.percentile(p),
                    "ms",
                    target=at_most(TARGET_P99_MS) if p == 99 else None,
                    baseline=b.load.percentile(p),
                    higher_is_better=False,
                )
            )
        res.add(
            Figure(
                f"rate_{key}",
                f"offered rate, {label}",
                m.load.batches_per_s,
                "req/s",
                baseline=b.load.batches_per_s,
                note="open loop; latency counted from the scheduled send time",
            )
        )
    res.notes.append(
        "baseline column of the half-load rows: the bare baseline (no jobs, no checks) driven "
        "open loop at the same rate with the same body, right after each RetroSpec window."
    )


def _background_replay(ctx: BenchContext, rs: RetrospecServer, rate: float) -> None:
    spec = LoadSpec(
        host="127.0.0.1",
        port=rs.port,
        path=rs.ingest_path,
        body=replay_body(),
        run_id="r" + uuid.uuid4().hex[:10],
        connections=4,
        workers=1,
        duration=ctx.duration,
        warmup=ctx.warmup,
        rate=rate,
    )
    run_load(spec)
