"""Load generator: worker processes keeping keep-alive connections busy with pre-built requests.

Each worker runs a uvloop event loop with raw asyncio protocols (no HTTP client library): the
request bytes are assembled from fixed templates with only the session id and sequence number
changing, so a worker spends its time on sockets, not on building requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Session ids rotate every this many batches so the server sees sessions of realistic length.
BATCHES_PER_SESSION = 50


@dataclass(frozen=True, slots=True)
class Body:
    """A request body template: prefix + session id + middle + seq + suffix."""

    prefix: bytes
    middle: bytes
    suffix: bytes
    events: int  # failures (or chunks) one request carries


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to send, where, how hard and for how long."""

    host: str
    port: int
    path: str  # path and query, e.g. /api/v1/ingest?key=...
    body: Body
    run_id: str  # prefix of every session id of this run (for the durability count)
    connections: int = 32
    workers: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    rate: float | None = None  # total batches/s (open loop); None = as fast as answers come
    # More ports of the same deployment (several server processes): connections go round-robin
    # over port + more_ports.
    more_ports: tuple[int, ...] = ()

    def port_of(self, worker: int, conn: int) -> int:
        """The port one connection of one worker talks to."""
        ports = (self.port, *self.more_ports)
        return ports[(conn * self.workers + worker) % len(ports)]


@dataclass(slots=True)
class WorkerResult:
    """Counts and latencies of one worker process."""

    sent: int = 0
    acked_events_total: int = 0  # every 2xx over the whole run (durability check)
    acked_batches_total: int = 0
    window_ok: int = 0  # 2xx answers completed inside the measurement window
    window_events: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))


@dataclass(slots=True)
class LoadResult:
    """The merged outcome of a load run."""

    spec: LoadSpec
    window_start: float
    window_end: float
    sent: int
    acked_events_total: int
    acked_batches_total: int
    window_ok: int
    window_events: int
    statuses: dict[int, int]
    errors: int
    latencies_ms: list[float]
    generator_cpu_s: float = 0.0

    @property
    def seconds(self) -> float:
        """Length of the measurement window."""
        return self.window_end - self.window_start

    @property
    def batches_per_s(self) -> float:
        """Acknowledged batches per second inside the window."""
        return self.window_ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def events_per_s(self) -> float:
        """Acknowledged events per second inside the window."""
        return self.window_events / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in ms (nearest rank) over the window's answers."""
        return percentile(self.latencies_ms, p)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of values (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = b""
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence no isinstance check.
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buf) < total:
            return
        status = int(self.buf[9:12])
        self.buf = self.buf[total:]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, data: bytes) -> int:
        """Send one request and wait for its status code."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


class _Requests:
    """Builds the request bytes of one connection (its own sessions, increasing seq)."""

    def __init__(self, spec: LoadSpec, worker: int, conn: int) -> None:
        self.head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.body = spec.body
        self.base = f"{spec.run_id}-{worker}-{conn}-"
        self.n = 0

    def next(self) -> bytes:
        """The next request: a new (session, seq) pair every time."""
        n = self.n
        self.n += 1
        sid = f"{self.base}{n // BATCHES_PER_SESSION}".encode()
        seq = str(n % BATCHES_PER_SESSION).encode()
        b = self.body
        body = b"".join((b.prefix, sid, b.middle, seq, b.suffix))
        return b"".join((self.head, str(len(body)).encode(), b"\r\n\r\n", body))


async def _worker_main(spec: LoadSpec, worker: int, chan: Any) -> WorkerResult:
    loop = asyncio.get_running_loop()
    result = WorkerResult()
    my_conns = spec.connections // spec.workers + (
        1 if worker < spec.connections % spec.workers else 0
    )
    conns: list[tuple[_Conn, _Requests]] = []
    for i in range(max(1, my_conns)):
        _, proto = await loop.create_connection(_Conn, spec.host, spec.port_of(worker, i))
        conns.append((proto, _Requests(spec, worker, i)))
    # Connected: tell the parent, then block (nothing else runs yet) until it names the start.
    chan.send(("ready", None))
    start_at: float = chan.recv()
    # Wall clock, shared by every worker process and the parent.
    w_start = start_at + spec.warmup
    w_end = w_start + spec.duration
    mono_offset = time.perf_counter() - time.time()
    w_start_p, w_end_p = w_start + mono_offset, w_end + mono_offset
    lat = result.latencies_ms
    statuses = result.statuses

    def record(status: int, t0: float, t1: float) -> None:
        statuses[status] = statuses.get(status, 0) + 1
        if 200 <= status < 300:
            result.acked_batches_total += 1
            result.acked_events_total += spec.body.events
            if w_start_p <= t1 <= w_end_p:
                result.window_ok += 1
                result.window_events += spec.body.events
                lat.append((t1 - t0) * 1000.0)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    perf = time.perf_counter
    if spec.rate is None:

        async def closed(proto: _Conn, reqs: _Requests) -> None:
            while perf() < w_end_p and not proto.closed:
                data = reqs.next()
                t0 = perf()
                result.sent += 1
                try:
                    status = await proto.request(data)
                except ConnectionError:
                    result.errors += 1
                    return
                record(status, t0, perf())

        await asyncio.gather(*(closed(p, r) for p, r in conns))
    else:
        await _open_loop(spec, worker, conns, w_end_p, record, result)
    for proto, _ in conns:
        if proto.transport is not None:
            proto.transport.close()
    return result


async def _open_loop(
    spec: LoadSpec,
    worker: int,
    conns: list[tuple[_Conn, _Requests]],
    end_p: float,
    record: Callable[[int, float, float], None],
    result: WorkerResult,
) -> None:
    """Send at a fixed rate; latency counts from the scheduled send (no coordinated omission)."""
    assert spec.rate is not None
    rate = spec.rate / spec.workers
    idle: asyncio.Queue[tuple[_Conn, _Requests]] = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)
    pending: set[asyncio.Task[None]] = set()
    perf = time.perf_counter
    begin = perf()
    # Spread workers' phases so their sends interleave instead of bursting together.
    scheduled = worker / spec.rate

    async def one(conn: tuple[_Conn, _Requests], intended: float) -> None:
        proto, reqs = conn
        try:
            status = await proto.request(reqs.next())
        except ConnectionError:
            result.errors += 1
            return
        record(status, intended, perf())
        idle.put_nowait(conn)

    while True:
        now = perf()
        if now >= end_p:
            break
        while scheduled <= now - begin:
            intended = begin + scheduled
            scheduled += 1.0 / rate
            conn = await idle.get()
            result.sent += 1
            task = asyncio.create_task(one(conn, intended))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(max(0.0, begin + scheduled - perf()))
    if pending:
        await asyncio.gather(*pending)


def _run_worker(spec: LoadSpec, worker: int, out: Any) -> None:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # Windows: the stock loop is slower but works
        runner = asyncio.run
    try:
        res = runner(_worker_main(spec, worker, out))
        out.send(("ok", res))
    except BaseException as exc:  # reported to the parent, which raises
        out.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()


def run_load(
    spec: LoadSpec,
    *,
    on_window: Callable[[str], None] | None = None,
    sampler: Callable[[], None] | None = None,
) -> LoadResult:
    """Run spec in worker processes; on_window('start'|'end') fires at the window edges."""
    ctx = multiprocessing.get_context("spawn")
    pipes = []
    procs = []
    for w in range(spec.workers):
        mine, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_run_worker, args=(spec, w, theirs), daemon=True)
        proc.start()
        theirs.close()
        pipes.append(mine)
        procs.append(proc)
    gen_cpu = 0.0
    try:
        for chan in pipes:
            if not chan.poll(60):
                raise RuntimeError("a load generator worker did not start")
            kind, payload = chan.recv()
            if kind != "ready":
                raise RuntimeError(f"load generator worker failed: {payload}")
        # Every worker is connected: a shared wall-clock start a moment from now.
        start_at = time.time() + 0.05
        for chan in pipes:
            chan.send(start_at)
        w_start = start_at + spec.warmup
        w_end = w_start + spec.duration
        _sleep_until(w_start, sampler)
        if on_window:
            on_window("start")
        gen_cpu -= _cpu(procs)
        _sleep_until(w_end, sampler)
        gen_cpu += _cpu(procs)
        if on_window:
            on_window("end")
        results: list[WorkerResult] = []
        for recv in pipes:
            if not recv.poll(spec.duration + spec.warmup + 60):
                raise RuntimeError("a load generator worker did not report back")
            kind, payload = recv.recv()
            if kind != "ok":
                raise RuntimeError(f"load generator worker failed: {payload}")
            results.append(payload)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    statuses: dict[int, int] = {}
    for r in results:
        for k, v in r.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    lat: list[float] = []
    for r in results:
        lat.extend(r.latencies_ms)
    return LoadResult(
        spec=spec,
        window_start=w_start,
        window_end=w_end,
        sent=sum(r.sent for r in results),
        acked_events_total=sum(r.acked_events_total for r in results),
        acked_batches_total=sum(r.acked_batches_total for r in results),
        window_ok=sum(r.window_ok for r in results),
        window_events=sum(r.window_events for r in results),
        statuses=statuses,
        errors=sum(r.errors for r in results),
        latencies_ms=lat,
        generator_cpu_s=gen_cpu,
    )


def _cpu(procs: list[Any]) -> float:
    import psutil

    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(proc.pid).cpu_times()
            total += t.user + t.system
    return total


def _sleep_until(deadline: float, sampler: Callable[[], None] | None) -> None:
    while True:
        left = deadline - time.time()
        if left <= 0:
            return
        if sampler is not None:
            with contextlib.suppress(Exception):
                sampler()
        time.sleep(min(left, 0.25))
