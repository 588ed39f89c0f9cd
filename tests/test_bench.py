"""`retrospec bench --quick --json` runs every benchmark end to end (so they cannot rot)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from retrospec.bench.loadgen import LoadSpec, _Requests, percentile
from retrospec.bench.payloads import failure_body, replay_body
from retrospec.bench.runner import BENCHMARKS, Figure, at_least, at_most
from retrospec.ingest.envelope import ENVELOPE_DECODER


# Benchmarks that measure modules written later report "unavailable" until those exist.
def test_request_templates_make_valid_unique_envelopes() -> None:
    spec = LoadSpec(host="127.0.0.1", port=1, path="/x", body=failure_body(10), run_id="t1")
    reqs = _Requests(spec, worker=0, conn=3)
    seen = set()
    for _ in range(120):
        raw = reqs.next()
        head, body = raw.split(b"\r\n\r\n", 1)
        assert f"Content-Length: {len(body)}".encode() in head
        env = ENVELOPE_DECODER.decode(body)
        assert len(env.failures) == 10
        assert env.session.id.startswith("t1-0-3-")
        seen.add((env.session.id, env.seq))
    assert len(seen) == 120  # every request is a new (session, seq): nothing is a duplicate


def test_replay_body_is_about_9_kb_of_events() -> None:
    body = replay_body()
    raw = body.prefix + b"s-12345678" + body.middle + b"0" + body.suffix
    env = ENVELOPE_DECODER.decode(raw)
    assert 8_500 <= len(env.events) <= 10_000
    assert isinstance(msgspec.json.decode(bytes(env.events)), list)


def test_percentile_and_targets() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    fig = Figure("x", "x", 50.0, "ms", target=at_most(20), baseline=25.0, higher_is_better=False)
    assert fig.met is False and fig.ratio == 0.5
    assert Figure("y", "y", 7000.0, "ev/s", target=at_least(5000), baseline=10_000.0).ratio == 0.7


# Benchmarks whose quick run has a test of its own.
SEPARATE = {"grouping", "ingest-scale"}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quick_bench_reports_every_benchmark(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "retrospec",
            "bench",
            # grouping's quick run builds and drives a corpus: tests/test_grouping_corpus.py;
            # ingest-scale's starts six servers and PostgreSQL: tests/test_bench_scale.py.
            *(name for name in BENCHMARKS if name not in SEPARATE),
            "--quick",
            "--json",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert doc["quick"] is True
    assert doc["machine"]["cpus"] and doc["machine"]["sqlite"]
    benches = doc["benchmarks"]
    assert set(benches) == set(BENCHMARKS) - SEPARATE
    for name, bench in benches.items():
        if bench["status"] == "unavailable":
            # Only a missing browser outside CI excuses a benchmark (CI installs chromium).
            no_browser = name in ("storage", "first-failure", "video") and not os.environ.get("CI")
            assert no_browser, f"{name} unavailable: {bench['notes']}"
            continue
        assert bench["status"] == "ok", f"{name}: {bench['error']}"
        assert bench["figures"], name
        for key, fig in bench["figures"].items():
            value = fig["value"]
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, key)
    ingest = benches["ingest-failures"]["figures"]
    assert ingest["events_per_s_batch1"]["value"] > 0
    assert ingest["events_per_s_batch1"]["baseline"] > 0
    assert ingest["acked_not_stored_batch1"]["value"] == 0
    assert ingest["acked_not_stored_batch10"]["value"] == 0
    assert benches["ingest-replay"]["figures"]["acked_not_stored"]["value"] == 0
    opens = benches["replay"]["figures"]
    for key in ("first_frame_ms_2min", "next_frame_ms_2min", "open_end_ms_5min"):
        assert opens[key]["value"] > 0, key
    # The issue-19 rows: the cluster job kept up, every backlog drained (the limit is 600 s)
    # and every probe became an issue.
    pipeline = benches["pipeline"]["figures"]
    for key in ("flood_ingest_per_s", "flood_cluster_per_s", "distinct_cluster_per_s"):
        assert pipeline[key]["value"] > 0, key
    for key in ("flood_drain_s", "drain_s_50", "drain_s_100"):
        assert pipeline[key]["value"] < 600, key
    assert pipeline["not_visible_50"]["value"] == pipeline["not_visible_100"]["value"] == 0
    assert pipeline["p95_s_50"]["value"] > 0 and pipeline["ingest_p99_ms_50"]["value"] > 0
    # The p99 rows carry their control: the bare baseline driven at the same rate.
    assert pipeline["ingest_p99_ms_50"]["baseline"] > 0
    latency = benches["latency"]["figures"]
    for key in ("nojobs", "jobs"):
        assert latency[f"p99_ms_half_saturation_{key}"]["baseline"] > 0, key
        offered = latency[f"rate_{key}"]
        assert offered["baseline"] == pytest.approx(offered["value"], rel=0.25), key


BLOCK_OPTIONAL = """
import importlib, importlib.abc, json, sys, tempfile
from pathlib import Path

class Missing(importlib.abc.MetaPathFinder):
    # What a plain `pip install .` lacks: the [test] extra's httpx and playwright.
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("httpx", "playwright"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Missing())
from retrospec.bench.runner import BENCHMARKS, BenchContext, run_benchmarks
for target in BENCHMARKS.values():
    importlib.import_module(target.split(":")[0])  # every benchmark module imports
ctx = BenchContext(quick=True, duration=1.0, warmup=0.0, workers=1, connections=1,
                   workdir=Path(tempfile.mkdtemp()))
results = run_benchmarks(["storage", "first-failure"], ctx)
print(json.dumps([[r.name, r.status, r.notes] for r in results]))
"""


def test_benchmarks_without_the_test_extra_are_unavailable_and_name_it() -> None:
    # Only the cheap part runs: each benchmark stops at its first check, before any server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_OPTIONAL],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, status, notes in results:
        assert status == "unavailable", (name, notes, proc.stderr)
        why = " ".join(notes)
        assert "retrospec[test]" in why or "chromium is not installed" in why, (name, why)


def _fingerprints(raw: bytes) -> set[str]:
    from retrospec.issues.clustering import failure_input
    from retrospec.issues.fingerprint import fingerprint

    env = ENVELOPE_DECODER.decode(raw)
    out = set()
    for f in env.failures:
        row = {
            "kind": f.kind, "type": f.type, "message": f.message, "url": f.url,
            "method": f.method, "request_url": f.request_url, "status": f.status,
            "payload": json.dumps({"stack": f.stack}) if f.stack else None,
        }  # fmt: skip
        fp = fingerprint(failure_input(row))
        out.add(fp.position or fp.hash)  # one exact position is one bug too (identity rule 3)
    return out


def test_pipeline_bodies_are_one_bug_and_all_distinct_bugs() -> None:
    from retrospec.bench.pipeline import distinct_body

    loop = failure_body(10, one_bug=True)
    assert len(_fingerprints(loop.prefix + b"s-12345678" + loop.middle + b"0" + loop.suffix)) == 1
    a, b = distinct_body(0), distinct_body(10)
    assert len(_fingerprints(a) | _fingerprints(b)) == 20
