"""Benchmark plumbing: servers under test as subprocesses, figures, targets, table and JSON."""

from __future__ import annotations

import contextlib
import http.client
import importlib
import importlib.util
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from retrospec import __version__, console
from retrospec.sites import Site, create_site
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import prepare_database

# name -> "module:function"; the order is the order `retrospec bench` runs them in.
BENCHMARKS: dict[str, str] = {
    "ingest-failures": "retrospec.bench.ingest:run_failures",
    "ingest-scale": "retrospec.bench.scale:run",
    "ingest-replay": "retrospec.bench.replay:run",
    "replay": "retrospec.bench.replay:run_open",
    "latency": "retrospec.bench.ingest:run_latency",
    "pipeline": "retrospec.bench.pipeline:run",
    "storage": "retrospec.bench.storage:run",
    "memory": "retrospec.bench.memory:run",
    "dashboard": "retrospec.bench.dashboard:run",
    "purge": "retrospec.bench.purge:run",
    "symbolication": "retrospec.bench.symbolication:run",
    "sdk-size": "retrospec.bench.firstrun:run_sdk_size",
    "first-failure": "retrospec.bench.firstrun:run_first_failure",
    "grouping": "retrospec.bench.grouping:run",
    "video": "retrospec.bench.video:run",
}


# Optional packages the benchmarks drive a browser with come from this extra (a plain
# `pip install .` leaves them out; those benchmarks report "unavailable", naming it).
PLAYWRIGHT_EXTRA = "'retrospec[test]' (playwright)"


class Unavailable(Exception):
    """A benchmark cannot run here (a browser or an optional package is missing); reported."""


def module_available(name: str) -> bool:
    """Whether an optional package (playwright, an extra's library) can be imported."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def require_module(name: str, install: str) -> None:
    """Raise Unavailable, naming what to install, when an optional package is missing."""
    if not module_available(name):
        raise Unavailable(f"needs {name}, which is not installed: pip install {install}")


@dataclass(frozen=True, slots=True)
class Target:
    """A target from ARCHITECTURE.md §7: value must be >= or <= a bound."""

    op: str
    bound: float
    text: str

    def met(self, value: float) -> bool:
        """Whether value meets the target."""
        return value >= self.bound if self.op == ">=" else value <= self.bound


def at_least(bound: float, text: str | None = None) -> Target:
    """A floor target."""
    return Target(">=", bound, text or f"≥ {fmt(bound)}")


def at_most(bound: float, text: str | None = None) -> Target:
    """A ceiling target."""
    return Target("<=", bound, text or f"≤ {fmt(bound)}")


@dataclass(slots=True)
class Figure:
    """One measured number, with its target and the same-run baseline where one applies."""

    key: str
    label: str
    value: float
    unit: str
    target: Target | None = None
    baseline: float | None = None
    note: str = ""
    # For "lower is better" figures (latency, CPU) the ratio is baseline/value.
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        """This figure relative to the baseline (1.0 = as good as the bare baseline)."""
        if self.baseline is None or self.baseline == 0 or self.value == 0:
            return None
        if self.higher_is_better:
            return self.value / self.baseline
        return self.baseline / self.value

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None when there is no target)."""
        return None if self.target is None else self.target.met(self.value)

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape of a figure."""
        return {
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "target": None
            if self.target is None
            else {"op": self.target.op, "value": self.target.bound, "text": self.target.text},
            "met": self.met,
            "baseline": self.baseline,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "note": self.note,
        }


@dataclass(slots=True)
class BenchResult:
    """What one benchmark produced: ok with figures, unavailable with a reason, or error."""

    name: str
    status: str = "ok"
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def add(self, figure: Figure) -> Figure:
        """Append a figure and return it."""
        self.figures.append(figure)
        return figure

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape of a benchmark."""
        return {
            "status": self.status,
            "seconds": round(self.seconds, 1),
            "figures": {f.key: f.as_json() for f in self.figures},
            "notes": self.notes,
            "error": self.error,
        }


@dataclass(slots=True)
class BenchContext:
    """Options shared by every benchmark of one invocation, plus a cache between them."""

    quick: bool
    duration: float
    warmup: float
    workers: int
    connections: int
    workdir: Path
    keep: bool = False
    # A PostgreSQL server for the benchmarks that run on one (ingest-scale); None = start a
    # throwaway cluster when Debian's binaries are there.
    database_url: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        """A progress line on stderr (stdout stays clean for --json)."""
        sys.stderr.write(f"  · {message}\n")
        sys.stderr.flush()

    def scratch(self, name: str) -> Path:
        """A fresh directory under the work dir."""
        path = self.workdir / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


def fmt(value: float | None) -> str:
    """A number for a table: thousands separators, few decimals."""
    if value is None:
        return ""
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 100:
        return f"{value:,.0f}"
    if mag >= 10:
        return f"{value:,.1f}"
    if mag >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One GET on loopback (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tree_cpu_seconds(ps: psutil.Process) -> float:
    """CPU seconds of a process, its live descendants and the children it has reaped.

    For servers made of several processes (granian's worker, PostgreSQL's backends); a
    child that exits inside a window still counts through its parent's children_* times.
    """
    try:
        t = ps.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        kids = ps.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for kid in kids:
        try:
            k = kid.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += k.user + k.system
    return float(total)


@dataclass
class Server:
    """A server under test in its own process, with its CPU time and memory readable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None
    # Count the CPU of child processes too (granian serves from a worker process).
    tree: bool = False
    # Where its rows are: a PostgreSQL URL, or "" for <data_dir>/retrospec.sqlite3.
    database_url: str = ""

    @property
    def database(self) -> str:
        """Its database: the PostgreSQL URL or the SQLite file."""
        return self.database_url or str(self.data_dir / "retrospec.sqlite3")

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait for /healthz."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting (several servers can then boot at once)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent
        )
        log.close()
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until /healthz answers 200; raise with the log's tail if it exits or never does."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_get(self.port, "/healthz", timeout=1)[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /healthz:\n{self.log()[-3000:]}")

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process (all its threads)."""
        assert self.ps is not None
        if self.tree:
            return tree_cpu_seconds(self.ps)
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        """Resident set size in bytes."""
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@dataclass
class RetrospecServer(Server):
    """`retrospec serve` with a bench site whose ingest key is known."""

    site: Site | None = None
    key: str = ""

    @property
    def db_path(self) -> Path:
        """Its SQLite file."""
        return self.data_dir / "retrospec.sqlite3"

    @property
    def ingest_path(self) -> str:
        """Path and query of the ingest endpoint with the bench key."""
        return f"/api/v1/ingest?key={self.key}"


def _env(data_dir: Path, settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    env["RETROSPEC_DATA_DIR"] = str(data_dir)
    env["RETROSPEC_LOG_LEVEL"] = "warning"
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in settings.items():
        env[f"RETROSPEC_{name.upper()}"] = value
    return env


def bench_site(database: Path | str, origins: list[str] | None = None) -> tuple[Site, str]:
    """Migrate a database and give it a 'bench' site; return the site and a new ingest key."""
    prepare_database(database)
    conn = connect(database)
    try:
        existing = conn.execute("SELECT 1 FROM sites WHERE name = 'bench'").fetchone()
        if existing:
            from retrospec.sites import add_key, get_site

            site = get_site(conn, "bench")
            key = DirectWriter(conn).call(lambda c: add_key(c, site.id))
            return site, key
        return DirectWriter(conn).call(lambda c: create_site(c, "bench", origins or []))
    finally:
        conn.close()


# Load comes from one address and many sessions: the per-client, per-session and per-site
# buckets and the daily quotas would measure themselves, not the server.
UNLIMITED = {
    "rate_limit_per_second": "0",
    "client_rate_limit_per_second": "0",
    "session_rate_limit_per_second": "0",
    "quota_batches_per_day": "0",
    "quota_failures_per_day": "0",
    "quota_mb_per_day": "0",
}


def start_retrospec(
    ctx: BenchContext,
    name: str,
    *,
    jobs: bool,
    settings: dict[str, str] | None = None,
    data_dir: Path | None = None,
    origins: list[str] | None = None,
    database_url: str = "",
    site: tuple[Site, str] | None = None,
    front: Callable[[int], list[str]] | None = None,
    wait: bool = True,
) -> RetrospecServer:
    """A real `retrospec serve` on a fresh data dir with rate limiting off and a bench site.

    database_url puts it on PostgreSQL (with site: one made by bench_site already, shared by
    several processes); front(port) gives another command line serving the same app; with
    wait=False the caller calls wait_ready() (to let several servers boot at once).
    """
    ddir = data_dir or ctx.scratch(name) / "data"
    ddir.mkdir(parents=True, exist_ok=True)
    if site is None:
        site = bench_site(database_url or ddir / "retrospec.sqlite3", origins)
    port = free_port()
    values = dict(UNLIMITED, jobs="true" if jobs else "false")
    if database_url:
        values["database_url"] = database_url
    if front is not None:  # the app learns its address from settings, not from a --port flag
        values["port"] = str(port)
    values.update(settings or {})
    argv = [sys.executable, "-m", "retrospec", "serve", "--port", str(port)]
    server = RetrospecServer(
        name="retrospec serve",
        argv=front(port) if front else argv,
        env=_env(ddir, values),
        port=port,
        data_dir=ddir,
        log_path=ddir.parent / f"{name}-serve.log",
        tree=front is not None,
        database_url=database_url,
        site=site[0],
        key=site[1],
    )
    if wait:
        server.start()
    else:
        server.launch()
    return server


def start_baseline(ctx: BenchContext, name: str, *, wait: bool = True) -> Server:
    """The bare ASGI + sqlite3 baseline under the same uvicorn settings (wait: as in
    start_retrospec)."""
    ddir = ctx.scratch(name) / "data"
    ddir.mkdir(parents=True)
    port = free_port()
    server = Server(
        name="baseline",
        argv=[
            sys.executable,
            "-m",
            "retrospec.bench.baseline",
            "--port",
            str(port),
            "--data-dir",
            str(ddir),
            "--synchronous",
            "normal",
        ],
        env=_env(ddir, {}),
        port=port,
        data_dir=ddir,
        log_path=ddir.parent / f"{name}-baseline.log",
    )
    if wait:
        server.start()
    else:
        server.launch()
    return server


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Stop the server however the block ends."""
    try:
        yield server
    finally:
        server.stop()


def count_rows(db: Path | str, table: str, run_id: str) -> int:
    """Rows of one load run (its session ids all start with run_id + '-'), SQLite or PostgreSQL."""
    if isinstance(db, str) and db.startswith(("postgresql://", "postgres://")):
        conn = connect(db, readonly=True)
        try:
            # A prefix test, not a range: a server given by URL may sort text another way.
            prefix = run_id + "-"
            row = conn.execute(
                f"SELECT count(*) FROM {table} WHERE substr(session_id, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchone()
            return int(row[0])
        finally:
            conn.close()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        # '.' sorts right after '-', so this is a range scan over the session_id index.
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE session_id >= ? AND session_id < ?",
            (run_id + "-", run_id + "."),
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def machine() -> dict[str, Any]:
    """Facts about the machine and software the figures came from."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for mod in ("uvicorn", "uvloop", "httptools", "litestar", "msgspec"):
        with contextlib.suppress(Exception):
            versions[mod] = importlib.import_module(mod).__version__
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "retrospec": __version__,
        "cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": [round(x, 2) for x in load],
        **versions,
    }


def run_benchmarks(names: list[str], ctx: BenchContext) -> list[BenchResult]:
    """Run the named benchmarks in order; a crash is recorded as status 'error', never raised."""
    results: list[BenchResult] = []
    for name in names:
        module_name, attr = BENCHMARKS[name].split(":")
        sys.stderr.write(f"▶ {name}\n")
        sys.stderr.flush()
        started = time.monotonic()
        result = BenchResult(name=name)
        try:
            fn: Callable[[BenchContext, BenchResult], None] = getattr(
                importlib.import_module(module_name), attr
            )
            fn(ctx, result)
        except Unavailable as exc:
            result.status = "unavailable"
            result.notes.append(str(exc))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            result.status = "error"
            result.error = f"{type(exc).__name__}: {exc}"
            sys.stderr.write(traceback.format_exc())
        result.seconds = time.monotonic() - started
        results.append(result)
    return results


def print_results(results: list[BenchResult], info: dict[str, Any]) -> None:
    """Every benchmark as a table with its targets and baseline ratios."""
    console.print_text(
        f"RetroSpec {info['retrospec']} · {info['cpus']} CPUs ({info['cpu_model']}) · "
        f"Python {info['python']} · SQLite {info['sqlite']} · "
        f"load {info['load_average_at_start'][0]}"
    )
    for res in results:
        title = f"{res.name} ({res.seconds:.0f} s)"
        if res.status != "ok":
            console.print_text("")
            console.print_text(f"{title}: {res.status.upper()}")
            for note in res.notes:
                console.print_text(f"  {note}")
            if res.error:
                console.error(f"{res.name}: {res.error}")
            continue
        console.print_text("")
        rows = []
        for f in res.figures:
            met = "" if f.met is None else ("yes" if f.met else "MISSED")
            base = "" if f.baseline is None else f"{fmt(f.baseline)} {f.unit}"
            rows.append(
                (
                    f.label,
                    f"{fmt(f.value)} {f.unit}",
                    f.target.text if f.target else "",
                    met,
                    base,
                    "" if f.ratio is None else f"{f.ratio:.0%}",
                )
            )
        right = {"justify": "right"}
        console.print_table(
            ["figure", ("value", right), "target", "met", ("baseline", right), ("ratio", right)],
            rows,
            title=title,
        )
        for note in res.notes:
            console.print_text(f"  {note}")


def results_json(results: list[BenchResult], info: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The --json document."""
    return {
        "machine": info,
        "quick": quick,
        "benchmarks": {r.name: r.as_json() for r in results},
    }


def make_workdir(base: Path | None) -> Path:
    """A fresh directory for this invocation's data dirs and logs."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="retrospec-bench-", dir=base))
