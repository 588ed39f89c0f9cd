"""pipeline: time from the ingest ack of a new failure to its issue being listed, jobs on."""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import string
import threading
import time
import uuid

from retrospec.bench.loadgen import LoadSpec, percentile, run_load
from retrospec.bench.payloads import USER_AGENT, failure_body
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    at_most,
    running,
    start_retrospec,
)

TARGET_P95_S = 2.0
BACKGROUND_BATCHES_PER_S = 100.0  # x 10 failures of 24 distinct bugs: the cluster job has work


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


async def _wait_visible(rs: RetrospecServer, token: str, limit_s: float) -> float | None:
    """Seconds until the issue list query finds the probe's issue (None on timeout)."""
    from retrospec.issues.queries import list_issues
    from retrospec.storage.db import reading

    start = time.perf_counter()
    with reading(rs.db_path) as conn:
        while time.perf_counter() - start < limit_s:
            items, _ = list_issues(conn, q=f"Probe{token}Error", status="all", limit=5)
            if items:
                return time.perf_counter() - start
            await asyncio.sleep(0.01)
    return None


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Probes of never-seen failures under background load; p50/p95/max to issue visible."""
    probes = 5 if ctx.quick else 40
    # promote_after=1: the first failure of a new bug makes the issue (with the default of 2
    # it is the second one; the pipeline is the same).
    with running(
        start_retrospec(ctx, "pipeline", jobs=True, settings={"promote_after": "1"})
    ) as rs:
        assert isinstance(rs, RetrospecServer)
        window = probes * 0.8 + 2
        spec = LoadSpec(
            host="127.0.0.1",
            port=rs.port,
            path=rs.ingest_path,
            body=failure_body(10),
            run_id="p" + uuid.uuid4().hex[:10],
            connections=8,
            workers=1,
            duration=window,
            warmup=0.0,
            rate=BACKGROUND_BATCHES_PER_S,
        )
        background = threading.Thread(target=run_load, args=(spec,), daemon=True)
        background.start()
        time.sleep(1.0)  # the generator starts up, so the probes run under load
        delays: list[float] = []
        missing = 0
        rng = random.Random(11)
        for i in range(probes):
            token = "".join(rng.choice(string.ascii_letters) for _ in range(12))
            status = _post(rs, _probe_body(token, i))
            if status != 202:
                raise RuntimeError(f"probe ingest answered {status}")
            seen = asyncio.run(_wait_visible(rs, token, limit_s=30))
            if seen is None:
                missing += 1
            else:
                delays.append(seen)
            # Random phase against the job's 1-second tick.
            time.sleep(rng.uniform(0.05, 0.6))
        background.join()
    ctx.log(
        f"{len(delays)} probes: p50 {percentile(delays, 50):.2f} s, "
        f"p95 {percentile(delays, 95):.2f} s, max {max(delays, default=0):.2f} s"
    )
    res.add(
        Figure(
            "p95_s",
            "ack → issue visible, p95",
            percentile(delays, 95),
            "s",
            target=at_most(TARGET_P95_S),
            higher_is_better=False,
        )
    )
    res.add(Figure("p50_s", "ack → issue visible, p50", percentile(delays, 50), "s"))
    res.add(Figure("max_s", "ack → issue visible, max", max(delays, default=0.0), "s"))
    res.add(
        Figure(
            "not_visible",
            "probes never visible (30 s)",
            float(missing),
            "probes",
            target=at_most(0, "0"),
        )
    )
    res.notes.append(
        f"{probes} probes of never-seen bugs, each polled with issues.list_issues every 10 ms; "
        f"background {BACKGROUND_BATCHES_PER_S * 10:,.0f} failures/s of 24 known bugs; "
        "cluster job on its default 1 s interval; promote_after=1."
    )
