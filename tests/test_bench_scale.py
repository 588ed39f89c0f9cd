"""ingest-scale: every deployment row beside the baseline; missing parts make rows unavailable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from retrospec.bench.loadgen import LoadSpec
from retrospec.bench.payloads import failure_body
from retrospec.bench.pgcluster import pg_bindir
from retrospec.bench.runner import BENCHMARKS, Unavailable
from retrospec.bench.scale import DEPLOYMENTS


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}


@pytest.mark.parametrize(("workers", "ports"), [(1, (2,)), (2, (2,)), (1, (2, 3)), (3, ())])
def test_connections_spread_evenly_over_every_port(workers: int, ports: tuple[int, ...]) -> None:
    spec = LoadSpec(
        host="127.0.0.1",
        port=1,
        more_ports=ports,
        path="/x",
        body=failure_body(1),
        run_id="t",
        connections=48,
        workers=workers,
    )
    per_worker = [48 // workers + (1 if w < 48 % workers else 0) for w in range(workers)]
    used = Counter(spec.port_of(w, i) for w in range(workers) for i in range(per_worker[w]))
    assert set(used) == {1, *ports}
    assert max(used.values()) - min(used.values()) <= 1, used


def test_postgres_rows_are_unavailable_without_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrospec.bench.pgcluster import start_cluster

    monkeypatch.setenv("RETROSPEC_PG_BINDIR", str(tmp_path))  # an empty directory: no initdb
    with pytest.raises(Unavailable, match=r"apt-get install postgresql.*--database-url"):
        start_cluster()


BLOCK_GRANIAN = """
import contextlib, importlib.abc, sys, tempfile
from pathlib import Path

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "granian":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Missing())
from retrospec.bench.runner import BenchContext, Unavailable
from retrospec.bench.scale import DEPLOYMENTS, Postgres, _launch

ctx = BenchContext(quick=True, duration=1.0, warmup=0.0, workers=1, connections=1,
                   workdir=Path(tempfile.mkdtemp()), database_url="postgresql://unused/x")
with contextlib.ExitStack() as stack:
    dep = next(d for d in DEPLOYMENTS if d.granian)
    try:
        _launch(ctx, dep, Postgres(ctx, stack), stack)
    except Unavailable as exc:
        print("unavailable:", exc)
"""


def test_granian_row_is_unavailable_without_granian_and_names_the_install() -> None:
    # Stops at the first check, before any server starts.
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_GRANIAN],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "unavailable: needs granian" in proc.stdout
    assert "pip install granian" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_ingest_scale_reports_every_deployment_beside_the_baseline(tmp_path: Path) -> None:
    assert "ingest-scale" in BENCHMARKS
    argv = [sys.executable, "-m", "retrospec", "bench", "ingest-scale", "--quick", "--json"]
    proc = subprocess.run(
        [*argv, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=220,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    bench = json.loads(proc.stdout)["benchmarks"]["ingest-scale"]
    assert bench["status"] == "ok", bench
    figures = bench["figures"]
    # PostgreSQL's binaries may be missing outside CI only (.ci/run installs them); granian
    # comes with the test extra.
    pg_expected = bool(os.environ.get("CI")) or pg_bindir() is not None
    for dep in DEPLOYMENTS:
        if dep.postgres and not pg_expected:
            assert any(n.startswith(f"{dep.label}: unavailable:") for n in bench["notes"])
            continue
        for load in ("batch1", "chunks"):
            rate = figures[f"{dep.key}_{load}_per_s"]
            assert rate["value"] > 0 and rate["baseline"] > 0, (dep.key, load, rate)
            assert rate["ratio"] > 0, (dep.key, load)
            for p in ("p50", "p99"):
                assert figures[f"{dep.key}_{load}_{p}_ms"]["value"] > 0
            assert figures[f"{dep.key}_{load}_cpu_s_per_10k"]["value"] > 0
            if dep.postgres:  # our own cluster: its CPU is counted beside the servers'
                with_db = figures[f"{dep.key}_{load}_cpu_s_per_10k_with_db"]["value"]
                assert with_db > figures[f"{dep.key}_{load}_cpu_s_per_10k"]["value"]
        assert figures[f"{dep.key}_acked_not_stored"]["value"] == 0, dep.key
        assert figures[f"{dep.key}_acked_not_stored"]["met"] is True
    assert "SQLite with 2 processes is not a supported mode" in " ".join(bench["notes"])
