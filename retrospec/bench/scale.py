"""ingest-scale: ingest on another HTTP front, on PostgreSQL and on two processes (issues 14, 16).

One run, one bare baseline (bench/baseline.py), the same loads as ingest-failures and
ingest-replay, against every deployment side by side:

- SQLite, uvicorn, 1 process: what `retrospec serve` runs today (the reference row);
- SQLite, granian, 1 process: the same app under granian (optional: `pip install granian`);
- PostgreSQL, 1 and 2 `retrospec serve` processes on one database, the generator's connections
  spread over both ports (what a balancer in front of N nodes does).

SQLite with two processes is not a mode RetroSpec supports (one server per database file: the
scheduler's once-at-a-time rule and the single writer rely on it), so it has no row.
PostgreSQL is `--database-url` when given (a database the bench may write into), else a
throwaway cluster from Debian's binaries (bench/pgcluster.py); without either the PostgreSQL rows
say why they are unavailable and the others still run.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from retrospec.bench.ingest import Measured, describe, measure
from retrospec.bench.loadgen import Body
from retrospec.bench.payloads import failure_body, replay_body
from retrospec.bench.pgcluster import PgCluster, start_cluster
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    Unavailable,
    at_most,
    bench_site,
    module_available,
    require_module,
    running,
    start_baseline,
    start_retrospec,
)

# The factory granian imports in its worker (retrospec/asgi.py; by name, as granian loads it).
GRANIAN_TARGET = "retrospec.asgi:app"
# Quick mode: short windows, so the whole benchmark stays well under a minute.
QUICK_DURATION = 0.5


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to run RetroSpec: database, HTTP front and number of server processes."""

    key: str
    label: str
    postgres: bool = False
    granian: bool = False
    processes: int = 1


DEPLOYMENTS = (
    Deployment("sqlite", "SQLite, uvicorn, 1 process"),
    Deployment("sqlite_granian", "SQLite, granian, 1 process", granian=True),
    Deployment("pg1", "PostgreSQL, uvicorn, 1 process", postgres=True),
    Deployment("pg2", "PostgreSQL, uvicorn, 2 processes", postgres=True, processes=2),
)


@dataclass(frozen=True, slots=True)
class Load:
    """One request shape, sent to the baseline's matching endpoint and to every deployment."""

    key: str
    label: str
    body: Body
    baseline_path: str
    table: str
    unit: str


def loads(quick: bool) -> list[Load]:
    """Batch 1 and batch 10 failures, and ~9 KB replay chunks (quick: batch 10 left out)."""
    failures = "/ingest", "failures", "events/s"
    batch1 = Load("batch1", "1 failure/request", failure_body(1), *failures)
    batch10 = Load("batch10", "10 failures/request", failure_body(10), *failures)
    chunks = Load("chunks", "replay chunks", replay_body(), "/chunk", "chunks", "chunks/s")
    return [batch1, chunks] if quick else [batch1, batch10, chunks]


def granian_argv(port: int) -> list[str]:
    """granian serving retrospec.asgi:app as `retrospec serve` runs uvicorn: one worker, uvloop."""
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory", GRANIAN_TARGET,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--runtime-threads", "1",
        "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
        "--backlog", "2048",
    ]  # fmt: skip


@dataclass
class Running:
    """A deployment's live processes and, on our own cluster, PostgreSQL's CPU counter."""

    deployment: Deployment
    servers: list[RetrospecServer]
    database_cpu: Callable[[], float] | None = None
    missing: int = 0


class Postgres:
    """Databases for the PostgreSQL rows: the given server's, or a throwaway cluster's.

    The cluster boots in a thread (initdb takes seconds) while the other servers start.
    """

    def __init__(self, ctx: BenchContext, stack: contextlib.ExitStack) -> None:
        self.ctx = ctx
        self.cluster: PgCluster | None = None
        self.booting: Future[PgCluster] | None = None
        if not ctx.database_url and module_available("psycopg"):
            pool = stack.enter_context(ThreadPoolExecutor(1))
            self.booting = pool.submit(start_cluster)
            stack.callback(self._stop)

    def _stop(self) -> None:
        if self.booting is not None and self.booting.exception() is None:
            self.booting.result().stop()

    def database(self, name: str) -> tuple[str, Callable[[], float] | None]:
        """A database URL for one deployment, and how to read the server's CPU (ours only)."""
        require_module("psycopg", "'retrospec[postgres]'")
        if self.ctx.database_url:
            return self.ctx.database_url, None
        assert self.booting is not None
        if self.cluster is None:
            self.cluster = self.booting.result()  # raises Unavailable (or an error) again
            self.ctx.log(f"throwaway PostgreSQL cluster on port {self.cluster.port}")
        return self.cluster.create_database(f"bench_{name}"), self.cluster.cpu_seconds


def _launch(
    ctx: BenchContext, dep: Deployment, pg: Postgres, stack: contextlib.ExitStack
) -> Running:
    """Start a deployment's processes without waiting for them (the caller waits for all)."""
    name = f"scale-{dep.key}"
    if dep.granian:
        require_module("granian", "granian")
    if not dep.postgres:
        front = granian_argv if dep.granian else None
        rs = start_retrospec(ctx, name, jobs=False, front=front, wait=False)
        stack.enter_context(running(rs))
        return Running(dep, [rs])
    url, cpu = pg.database(dep.key)
    site = bench_site(url)
    # The processes share the database and one blob directory, as nodes share a bucket.
    blobs = ctx.scratch(name) / "blobs"
    settings = {"blob_url": str(blobs)}
    servers = []
    for i in range(dep.processes):
        rs = start_retrospec(
            ctx,
            f"{name}-{i + 1}",
            jobs=False,
            settings=settings,
            data_dir=ctx.workdir / name / f"data-{i + 1}",
            database_url=url,
            site=site,
            wait=False,
        )
        stack.enter_context(running(rs))
        servers.append(rs)
    return Running(dep, servers, cpu)


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Every deployment against the same baseline, each load in turn."""
    duration = min(ctx.duration, QUICK_DURATION) if ctx.quick else ctx.duration
    with contextlib.ExitStack() as stack:
        pg = Postgres(ctx, stack)
        base = stack.enter_context(running(start_baseline(ctx, "scale-baseline", wait=False)))
        live: list[Running] = []
        for dep in DEPLOYMENTS:
            try:
                live.append(_launch(ctx, dep, pg, stack))
            except Unavailable as exc:
                res.notes.append(f"{dep.label}: unavailable: {exc}")
                ctx.log(f"{dep.label}: unavailable: {exc}")
        for server in [base, *(s for run_ in live for s in run_.servers)]:
            server.wait_ready(60)
        for load in loads(ctx.quick):
            b = measure(
                ctx, base, load.baseline_path, load.body, table=load.table, duration=duration
            )
            ctx.log(describe(f"baseline, {load.label}", b))
            if b.missing:
                res.notes.append(f"baseline, {load.label}: {b.missing} acked events not stored")
            for run_ in live:
                m = measure(
                    ctx,
                    run_.servers,
                    run_.servers[0].ingest_path,
                    load.body,
                    table=load.table,
                    duration=duration,
                    other_cpu=run_.database_cpu,
                )
                ctx.log(describe(f"{run_.deployment.label}, {load.label}", m))
                run_.missing += m.missing
                _figures(res, run_, load, m, b)
        for run_ in live:
            res.add(
                Figure(
                    f"{run_.deployment.key}_acked_not_stored",
                    f"{run_.deployment.label}: acked, not stored",
                    float(run_.missing),
                    "events",
                    target=at_most(0, "0"),
                    note="every load; rows counted in the deployment's own database",
                )
            )
    res.notes.append(_setup_note(ctx, duration, pg))


def _figures(res: BenchResult, run_: Running, load: Load, m: Measured, b: Measured) -> None:
    dep = run_.deployment
    key, label = f"{dep.key}_{load.key}", f"{dep.label}: {load.label}"
    res.add(
        Figure(
            f"{key}_per_s",
            label,
            m.durable_events_per_s,
            load.unit,
            baseline=b.durable_events_per_s,
            note="acknowledged and found in the database afterwards",
        )
    )
    for p in (50, 99):
        res.add(
            Figure(
                f"{key}_p{p}_ms",
                f"{label}, p{p}",
                m.load.percentile(p),
                "ms",
                baseline=b.load.percentile(p),
                higher_is_better=False,
            )
        )
    res.add(
        Figure(
            f"{key}_cpu_s_per_10k",
            f"{label}, CPU s / 10k",
            m.cpu_per_10k,
            "CPU s",
            baseline=b.cpu_per_10k,
            higher_is_better=False,
            note=f"summed over {len(run_.servers)} server process(es)",
        )
    )
    if run_.database_cpu is not None:
        res.add(
            Figure(
                f"{key}_cpu_s_per_10k_with_db",
                f"{label}, CPU s / 10k with PostgreSQL",
                m.all_cpu_per_10k,
                "CPU s",
                baseline=b.cpu_per_10k,
                higher_is_better=False,
                note="servers plus PostgreSQL's processes (SQLite's work is in-process)",
            )
        )


def _setup_note(ctx: BenchContext, duration: float, pg: Postgres) -> str:
    where = (
        "the server given by --database-url"
        if ctx.database_url
        else "a throwaway local cluster (fsync off, synchronous_commit on: a COMMIT reaches the "
        "OS before the 202, as with sqlite_synchronous = normal)"
        if pg.cluster is not None
        else "none"
    )
    return (
        f"{ctx.workers} generator process(es), {ctx.connections} keep-alive connections spread "
        f"over each deployment's ports, {duration:g} s windows after {ctx.warmup:g} s warm-up; "
        f"jobs off; PostgreSQL: {where}; SQLite with 2 processes is not a supported mode (one "
        "server per database file)."
    )
