"""pipeline: does processing keep pace with ingest (issue 19)?

Four phases, each on a fresh `retrospec serve` with its jobs on:

1. flood: batch-10 saturation (closed loop) of ONE repeated bug; the cluster job's throughput
   while ingest saturates, then the time to drain the backlog once the load stops. The ingest
   rate reached here is the run's batch-10 saturation point for phase 3.
2. distinct: a backlog of all-distinct stacks ingested with the jobs off, then drained by the
   cluster job alone (a restart with jobs on): its throughput when every failure is a new bug.
3. latency: open-loop load at 50% and 100% of phase 1's rate (24 known bugs per batch of 10)
   with probes of never-seen bugs: ack → issue visible p50/p95, and ingest p99 meanwhile (the
   cluster job working the whole time), then the drain after.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from retrospec.bench.ingest import OPEN_LOOP_CONNECTIONS, baseline_at
from retrospec.bench.loadgen import Body, LoadResult, LoadSpec, percentile, run_load
from retrospec.bench.payloads import USER_AGENT, failure, failure_body
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    at_least,
    at_most,
    running,
    start_retrospec,
)
from retrospec.storage.db import reading

TARGET_P95_S = 2.0
TARGET_DRAIN_S = 5.0
TARGET_DISTINCT_PER_S = 5000.0
TARGET_INGEST_P99_MS = 20.0
PROBE_LIMIT_S = 30.0
DRAIN_LIMIT_S = 600.0
# promote_after=1: the first failure of a new bug makes the issue (with the default of 2 it is
# the second one; the pipeline is the same).
SETTINGS = {"promote_after": "1"}


@dataclass(frozen=True, slots=True)
class Sizes:
    """How long and how big each phase is (full run or --quick)."""

    flood_s: float
    distinct_failures: int
    sustained_s: float


def sizes(ctx: BenchContext) -> Sizes:
    """The issue's sizes, or small ones for --quick."""
    if ctx.quick:
        return Sizes(flood_s=3.0, distinct_failures=600, sustained_s=3.0)
    return Sizes(flood_s=30.0, distinct_failures=20_000, sustained_s=60.0)


def distinct_body(start: int, batch: int = 10) -> bytes:
    """One request of `batch` failures, each a bug no other failure has (its own function,
    message and position)."""
    now = int(time.time() * 1000)
    failures = []
    for k in range(start, start + batch):
        f = failure(0, now + k - start)
        f["message"] = f"Cannot read properties of undefined (reading 'field{k}')"
        f["stack"] = (
            str(f["stack"])
            .replace("item0", f"handler{k}")
            .replace(":40:1200", f":{40 + k % 5000}:{1200 + k}")
        )
        failures.append(f)
    env = {
        "v": 1,
        "session": {
            "id": f"distinct-{start:09d}",
            "started_at": now - 60_000,
            "user_agent": USER_AGENT,
            "url": "https://shop.example/checkout",
            "release": "1.4.2",
        },
        "seq": 0,
        "failures": failures,
    }
    return json.dumps(env).encode()


def _probe_body(token: str, seq: int) -> bytes:
    now = int(time.time() * 1000)
    fn = f"probe{token}"
    stack = f"Error: probe {token} failed\n" + "\n".join(
        f"    at {fn}{i} (https://shop.example/static/js/probe.js:{10 + i}:5)" for i in range(3)
    )
    env = {
        "v": 1,
        "session": {"id": f"probe-{uuid.uuid4().hex}", "started_at": now, "user_agent": USER_AGENT},
        "seq": seq,
        "failures": [
            {
                "kind": "error",
                "ts": now,
                "type": f"Probe{token}Error",
                "message": f"probe {token} failed",
                "stack": stack,
                "url": "https://shop.example/checkout",
            }
        ],
    }
    return json.dumps(env).encode()


def _post(rs: RetrospecServer, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=30)
    try:
        conn.request("POST", rs.ingest_path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


async def _wait_visible(db: Path, token: str, limit_s: float) -> float | None:
    """Seconds until the issue list query finds the probe's issue (None on timeout)."""
    from retrospec.issues.queries import list_issues

    start = time.perf_counter()
    with reading(db) as conn:
        while time.perf_counter() - start < limit_s:
            items, _ = list_issues(conn, q=f"Probe{token}Error", status="all", limit=5)
            if items:
                return time.perf_counter() - start
            await asyncio.sleep(0.01)
    return None


def unclustered(db: Path) -> tuple[int, int]:
    """(failures stored, failures not yet clustered): ids only grow, so max(id) is the count."""
    with reading(db) as conn:
        top = conn.execute("SELECT coalesce(max(id), 0) FROM failures").fetchone()[0]
        left = conn.execute("SELECT count(*) FROM failures WHERE cluster_id IS NULL").fetchone()
    return int(top), int(left[0])


def drain_seconds(db: Path, since: float, limit_s: float = DRAIN_LIMIT_S) -> float:
    """Seconds from `since` (time.monotonic) until no failure is left unclustered (the limit
    when it never happens)."""
    while time.monotonic() - since < limit_s:
        if unclustered(db)[1] == 0:
            return time.monotonic() - since
        time.sleep(0.05)
    return limit_s


def _spec(ctx: BenchContext, rs: RetrospecServer, body: Body, duration: float) -> LoadSpec:
    return LoadSpec(
        host="127.0.0.1",
        port=rs.port,
        path=rs.ingest_path,
        body=body,
        run_id="p" + uuid.uuid4().hex[:10],
        connections=ctx.connections,
        workers=ctx.workers,
        duration=duration,
        warmup=0.0,
    )


@dataclass(slots=True)
class Flood:
    """Phase 1's outcome."""

    ingest_per_s: float
    cluster_per_s: float
    backlog: int  # unclustered failures when the load stopped
    drain_s: float
    batches_per_s: float


def flood(ctx: BenchContext, duration: float) -> Flood:
    """Batch-10 saturation of one repeated bug; cluster throughput meanwhile, then the drain."""
    with running(start_retrospec(ctx, "pipeline-flood", jobs=True, settings=SETTINGS)) as rs:
        assert isinstance(rs, RetrospecServer)
        edges: dict[str, tuple[float, int, int]] = {}

        def edge(which: str) -> None:
            top, left = unclustered(rs.db_path)
            edges[which] = (time.monotonic(), top, left)

        # The warm-up lets the job start its compute process before the window opens.
        spec = replace(
            _spec(ctx, rs, failure_body(10, one_bug=True), duration), warmup=max(ctx.warmup, 2.0)
        )
        load = run_load(spec, on_window=edge)
        (t0, top0, left0), (t1, top1, left1) = edges["start"], edges["end"]
        clustered = (top1 - left1) - (top0 - left0)
        drain = drain_seconds(rs.db_path, t1)
    return Flood(
        ingest_per_s=load.events_per_s,
        cluster_per_s=clustered / (t1 - t0) if t1 > t0 else 0.0,
        backlog=left1,
        drain_s=drain,
        batches_per_s=load.batches_per_s,
    )


def distinct(ctx: BenchContext, failures: int) -> tuple[float, int]:
    """All-distinct stacks: ingest a backlog with jobs off, then time the cluster job on it."""
    ddir = ctx.scratch("pipeline-distinct") / "data"
    per_request = 10
    starts = list(range(0, failures, per_request))
    with running(start_retrospec(ctx, "pipeline-distinct", jobs=False, data_dir=ddir)) as rs:
        assert isinstance(rs, RetrospecServer)
        server = rs
        lock = threading.Lock()
        refused: list[int] = []

        def post_some() -> None:
            while True:
                with lock:
                    if not starts or refused:
                        return
                    start = starts.pop()
                status = _post(server, distinct_body(start, per_request))
                if status != 202:
                    refused.append(status)

        threads = [threading.Thread(target=post_some) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if refused:
            raise RuntimeError(f"ingest answered {refused[0]}")
        backlog = unclustered(rs.db_path)[1]
    with running(
        start_retrospec(ctx, "pipeline-distinct", jobs=True, settings=SETTINGS, data_dir=ddir)
    ) as rs:
        assert isinstance(rs, RetrospecServer)
        # Timed from the first committed write, so the server's start, the job's first tick and
        # the compute process's start-up are not charged to its throughput.
        t0 = time.monotonic()
        left = backlog
        while left == backlog and time.monotonic() - t0 < DRAIN_LIMIT_S:
            time.sleep(0.01)
            left = unclustered(rs.db_path)[1]
        t1 = time.monotonic()
        seconds = drain_seconds(rs.db_path, t1)
    # What was left at the first write was clustered in `seconds`.
    return (left / seconds if seconds > 0 else 0.0), backlog


@dataclass(slots=True)
class Sustained:
    """Phase 3's outcome at one load level."""

    delays: list[float]
    missing: int
    load: LoadResult
    drain_s: float


def sustained_body() -> Body:
    """What the sustained windows send (and their baseline control, for the same body)."""
    return failure_body(10)


def sustained(ctx: BenchContext, rate: float, duration: float, name: str) -> Sustained:
    """Open-loop batch-10 load at `rate` batches/s for `duration`, probes all along."""
    with running(start_retrospec(ctx, name, jobs=True, settings=SETTINGS)) as rs:
        assert isinstance(rs, RetrospecServer)
        spec = replace(
            _spec(ctx, rs, sustained_body(), duration),
            rate=rate,
            connections=OPEN_LOOP_CONNECTIONS,
        )
        out: list[LoadResult] = []
        ended: list[float] = []
        background = threading.Thread(
            target=lambda: out.append(
                run_load(spec, on_window=lambda w: ended.append(time.monotonic()))
            ),
            daemon=True,
        )
        background.start()
        time.sleep(min(1.0, duration / 4))  # the generator starts up, so probes run under load
        delays, missing = _probe_while(rs, background.is_alive)
        background.join()
        drain = drain_seconds(rs.db_path, ended[-1] if ended else time.monotonic())
    return Sustained(delays=delays, missing=missing, load=out[0], drain_s=drain)


def _probe_while(rs: RetrospecServer, busy: Callable[[], bool]) -> tuple[list[float], int]:
    delays: list[float] = []
    missing = 0
    rng = random.Random(11)
    seq = 0
    while busy() or seq == 0:
        token = "".join(rng.choice(string.ascii_letters) for _ in range(12))
        status = _post(rs, _probe_body(token, seq))
        seq += 1
        if status != 202:
            raise RuntimeError(f"probe ingest answered {status}")
        seen = asyncio.run(_wait_visible(rs.db_path, token, limit_s=PROBE_LIMIT_S))
        if seen is None:
            missing += 1
        else:
            delays.append(seen)
        # Random phase against the job's 1-second tick.
        time.sleep(rng.uniform(0.05, 0.6))
    return delays, missing


def run(ctx: BenchContext, res: BenchResult) -> None:
    """The issue-19 rows: flood, distinct stacks, sustained 50%/100% of batch-10 saturation."""
    size = sizes(ctx)
    f = flood(ctx, size.flood_s)
    ctx.log(
        f"flood (one bug, batch 10, closed loop): ingest {f.ingest_per_s:,.0f} failures/s, "
        f"cluster {f.cluster_per_s:,.0f} failures/s, backlog {f.backlog:,} drained in "
        f"{f.drain_s:.1f} s"
    )
    res.add(Figure("flood_ingest_per_s", "ingest, batch-10 saturation, one repeated bug",
                   f.ingest_per_s, "failures/s"))  # fmt: skip
    res.add(
        Figure(
            "flood_cluster_per_s",
            "cluster job while ingest saturates, one repeated bug",
            f.cluster_per_s,
            "failures/s",
            target=at_least(f.ingest_per_s, "≥ ingest's batch-10 rate"),
        )
    )
    res.add(
        Figure(
            "flood_drain_s",
            f"backlog drain after {size.flood_s:g} s of batch-10 saturation",
            f.drain_s,
            "s",
            target=at_most(TARGET_DRAIN_S),
            higher_is_better=False,
            note=f"{f.backlog:,} failures unclustered when the load stopped",
        )
    )
    per_s, backlog = distinct(ctx, size.distinct_failures)
    ctx.log(f"distinct stacks: {backlog:,} failures clustered at {per_s:,.0f}/s")
    res.add(
        Figure(
            "distinct_cluster_per_s",
            "cluster job, all-distinct stacks",
            per_s,
            "failures/s",
            target=at_least(TARGET_DISTINCT_PER_S),
            note=f"a backlog of {backlog:,} new bugs, drained with ingest idle",
        )
    )
    for share in (50, 100):
        rate = f.batches_per_s * share / 100
        s = sustained(ctx, rate, size.sustained_s, f"pipeline-{share}")
        p99 = s.load.percentile(99)
        control = None
        if share == 50:
            # The target's control: the bare baseline at the same rate, body and connections.
            base = baseline_at(ctx, rate, sustained_body(), "pipeline-baseline-50")
            control = base.load.percentile(99)
        ctx.log(
            f"{share}% of batch-10 saturation ({rate:,.0f} batches/s for {size.sustained_s:g} s): "
            f"{len(s.delays)} probes p50 {percentile(s.delays, 50):.2f} s, "
            f"p95 {percentile(s.delays, 95):.2f} s, {s.missing} not visible; ingest p99 "
            f"{p99:.1f} ms; drained {s.drain_s:.1f} s after"
        )
        res.add(
            Figure(
                f"p95_s_{share}",
                f"failure → issue p95 at {share}% of batch-10 saturation",
                percentile(s.delays, 95),
                "s",
                target=at_most(TARGET_P95_S) if share == 50 else None,
                higher_is_better=False,
            )
        )
        res.add(Figure(f"p50_s_{share}", f"failure → issue p50 at {share}%",
                       percentile(s.delays, 50), "s", higher_is_better=False))  # fmt: skip
        res.add(
            Figure(
                f"not_visible_{share}",
                f"probes never visible ({PROBE_LIMIT_S:g} s) at {share}%",
                float(s.missing),
                "probes",
                target=at_most(0, "0"),
                higher_is_better=False,
            )
        )
        res.add(
            Figure(
                f"ingest_p99_ms_{share}",
                f"ingest p99 while the cluster job keeps up, {share}% load",
                p99,
                "ms",
                target=at_most(TARGET_INGEST_P99_MS) if share == 50 else None,
                baseline=control,
                higher_is_better=False,
            )
        )
        res.add(Figure(f"drain_s_{share}", f"drain after {share}% load", s.drain_s, "s",
                       higher_is_better=False))  # fmt: skip
    res.notes.append(
        f"flood: {size.flood_s:g} s closed loop, batches of 10 copies of one bug; distinct: "
        f"{size.distinct_failures:,} failures, each its own bug, ingested with the jobs off then "
        f"drained; sustained: {size.sustained_s:g} s open loop at 50% and 100% of the flood's "
        "batch rate (24 known bugs), probes of never-seen bugs polled with issues.list_issues "
        "every 10 ms; cluster job on its default 1 s interval; promote_after=1; the 50% p99's "
        "baseline is the bare baseline driven at the same rate with the same body."
    )
