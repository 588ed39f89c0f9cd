"""symbolication: frames/s through a real esbuild map, and the cluster job with maps vs without.

The fixture (assets/bench/sourcemaps, remade by its make_fixture.py) is a generated 24-module app
bundled and minified by esbuild with a 190 KB map. Stacks are three frames at real mapped
positions of the bundle, so every lookup hits a token, as a production error does.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from retrospec.bench.runner import BenchContext, BenchResult, Figure
from retrospec.issues import clustering
from retrospec.issues.stackframes import parse_stack
from retrospec.issues.symbolicate import symbolicate
from retrospec.jobs.context import JobContext
from retrospec.paths import assets_dir
from retrospec.settings import load_settings
from retrospec.sites import create_site
from retrospec.sourcemaps.maps import load_map
from retrospec.sourcemaps.resolve import MapRef, Resolved
from retrospec.sourcemaps.scopes import ScopeIndex
from retrospec.sourcemaps.store import prepare, store_artifacts
from retrospec.sourcemaps.upload import ArtifactFile
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import prepare_database

SCRIPT_URL = "https://shop.example/assets/app.min.js"
RELEASE = "bench-1"


def _fixture() -> tuple[bytes, bytes]:
    root = assets_dir() / "bench" / "sourcemaps"
    return (root / "app.min.js").read_bytes(), (root / "app.min.js.map").read_bytes()


def _stacks(map_bytes: bytes, count: int, seed: int = 7) -> list[str]:
    """Chrome-style stacks of three frames at real token positions (1-based like browsers)."""
    view = load_map(map_bytes).view
    rng = random.Random(seed)
    tokens = [view[rng.randrange(len(view))] for _ in range(count * 3)]
    stacks = []
    for i in range(count):
        lines = ["TypeError: Cannot read properties of undefined (reading 'amount')"]
        for t in tokens[i * 3 : i * 3 + 3]:
            lines.append(f"    at e ({SCRIPT_URL}:{t.dst_line + 1}:{t.dst_col + 1})")
        stacks.append("\n".join(lines))
    return stacks


def _frames_per_second(js: bytes, map_bytes: bytes, stacks: list[str]) -> tuple[float, float]:
    """(frames/s warm, map load + index ms) for the pure symbolication step."""
    t0 = time.perf_counter()
    (prepared,) = prepare([ArtifactFile("~/assets/app.min.js", js, map_bytes, None)])
    scopes = ScopeIndex.from_json(prepared.blobs[prepared.scopes_digest or ""])
    handle = load_map(map_bytes)
    load_ms = (time.perf_counter() - t0) * 1000
    ref = MapRef("bench", "~/assets/app.min.js", prepared.info.digest, None, None)
    resolved = Resolved(ref, handle, scopes, None)
    parsed = [parse_stack(s, collapse=False) for s in stacks]
    frames = sum(len(p) for p in parsed)
    t0 = time.perf_counter()
    for p in parsed:
        symbolicate(p, lambda _f: resolved)
    return frames / (time.perf_counter() - t0), load_ms


def _cluster_rate(ctx: BenchContext, name: str, stacks: list[str], with_maps: bool) -> float:
    """Failures/s of one full cluster job run over fresh failures (inline, one process)."""
    data = ctx.scratch(f"symbolication-{name}")
    settings = load_settings(None, env={}, overrides={"data_dir": str(data)}).settings
    prepare_database(settings.db_path)
    conn = connect(settings.db_path)
    blobs = BlobStore(settings.effective_blob_url)
    try:
        writer = DirectWriter(conn)
        site, _key = writer.call(lambda c: create_site(c, "bench", []))
        if with_maps:
            js, map_bytes = _fixture()
            files = [ArtifactFile("~/assets/app.min.js", js, map_bytes, None)]
            store_artifacts(writer.call, blobs, site.id, RELEASE, "", files)
        now = int(time.time() * 1000)
        rows = [
            (site.id, f"session-{i % 500:04d}", 0, "error", "TypeError", stack.split("\n")[0],
             "https://shop.example/cart", now, now, RELEASE, json.dumps({"stack": stack}))
            for i, stack in enumerate(stacks)
        ]  # fmt: skip
        writer.call(
            lambda c: c.executemany(
                "INSERT INTO failures (site_id, session_id, seq, kind, type, message, url, ts, "
                "received_at, release, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )
        job = JobContext(settings=settings, blobs=blobs, write=writer.call)
        t0 = time.perf_counter()
        result = clustering.run(job)
        elapsed = time.perf_counter() - t0
        mapped = conn.execute(
            "SELECT count(*) FROM cluster_frames WHERE frames LIKE '%\"mapped\":true%'"
        ).fetchone()[0]
    finally:
        conn.close()
    ctx.log(f"cluster job {name}: {result.items} failures in {elapsed:.2f} s, {mapped} mapped")
    if with_maps and mapped == 0:
        raise RuntimeError("no cluster got symbolicated frames: the benchmark measured nothing")
    return result.items / elapsed


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Measure symbolication speed and its cost in the cluster job."""
    js, map_bytes = _fixture()
    count = 300 if ctx.quick else 5000
    # Distinct stacks (a real mix of bugs), repeated so the fingerprint cache sees repeats too.
    distinct = _stacks(map_bytes, max(50, count // 10))
    stacks = [distinct[i % len(distinct)] for i in range(count)]
    rate, load_ms = _frames_per_second(js, map_bytes, _stacks(map_bytes, count, seed=11))
    res.add(Figure("frames_per_s", "frames symbolicated/s (warm map)", rate, "frames/s"))
    res.add(
        Figure(
            "map_load_ms",
            "190 KB map: parse, check, index functions",
            load_ms,
            "ms",
            higher_is_better=False,
        )
    )
    plain = _cluster_rate(ctx, "plain", stacks, with_maps=False)
    mapped = _cluster_rate(ctx, "maps", stacks, with_maps=True)
    res.add(Figure("cluster_plain_per_s", "cluster job without maps", plain, "failures/s"))
    res.add(
        Figure(
            "cluster_maps_per_s",
            "cluster job with maps",
            mapped,
            "failures/s",
            baseline=plain,
            note="ratio = with maps / without",
        )
    )
    res.notes.append(
        f"fixture {Path('assets/bench/sourcemaps')} (esbuild, 60 KB bundle, 190 KB map); "
        f"{count} failures of {len(distinct)} distinct 3-frame stacks, cluster job inline."
    )
