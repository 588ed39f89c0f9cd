"""grouping: how well failures group on real apps (the corpus of retrospec/bench/corpus/).

Seven apps (four TodoMVC implementations from npm, three multi-module apps on real npm
libraries) with 43 injected bugs, three variants each (other user data, UI control or stored
records), bundled by esbuild, Rollup, Vite, webpack and Parcel in two deploys each; every
session driven in chromium with RetroSpec's SDK sending to a real `retrospec serve`, then
grouped by the real cluster job. Prints pairwise precision and recall, bugs split and merged,
and recall per failure class. `--quick` builds with esbuild only (what CI runs).

The figures are without source maps: the bundles' maps are built but not uploaded (source-map
symbolication is measured once it is part of the cluster job).
"""

from __future__ import annotations

import functools
import shutil
import sqlite3
from typing import Any

from retrospec.bench.corpus.apps import APPS
from retrospec.bench.corpus.build import BUNDLERS, build_all, install
from retrospec.bench.corpus.drive import CLEAN, drive_all, sdk_config
from retrospec.bench.corpus.model import Workspace
from retrospec.bench.corpus.score import by_class, score
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    Unavailable,
    at_least,
    at_most,
    free_port,
    http_get,
    running,
    start_retrospec,
)
from retrospec.chromium import CHROMIUM_ARGS, chromium_path
from retrospec.jobs.context import JobContext
from retrospec.scheduler import run_job
from retrospec.settings import load_settings
from retrospec.sites import create_site
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect

QUICK_BUNDLERS = ("esbuild",)
DRIVERS = 2  # browsers driving sessions side by side
TARGET_PRECISION = 0.99
TARGET_RECALL = 0.95


def _labelled(db: sqlite3.Connection) -> tuple[list[tuple[str, str]], int, int]:
    """(cluster, truth) per bug failure; failures of clean sessions; failures never clustered."""
    labelled: list[tuple[str, str]] = []
    clean = unclustered = 0
    for cluster_id, user_key, kind in db.execute(
        "SELECT cluster_id, user_key, kind FROM failures ORDER BY id"
    ):
        parts = str(user_key or "").removeprefix("id:").split("|")
        if len(parts) != 5:
            continue
        app, bug, bundler, _deploy, _variant = parts
        if bug == CLEAN:
            clean += 1
            continue
        if cluster_id is None:
            unclustered += 1
            continue
        facet = "network" if kind == "network" else "script"
        labelled.append((str(cluster_id), f"{app}:{bundler}:{bug}/{facet}"))
    return labelled, clean, unclustered


def _sites(rs: RetrospecServer, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Create one site per (app, bundler) in the server's database; returns their ingest keys."""
    conn = connect(rs.db_path)
    try:
        writer = DirectWriter(conn)
        keys: dict[tuple[str, str], str] = {}
        for app, bundler in pairs:
            make = functools.partial(create_site, name=f"{app}-{bundler}", origins=[])
            keys[(app, bundler)] = writer.call(make)[1]
        return keys
    finally:
        conn.close()


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Build, drive, cluster and score the corpus."""
    chromium = chromium_path()
    if chromium is None:
        raise Unavailable("chromium is not installed (apt-get install chromium)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise Unavailable("Node.js and npm are not installed (apt-get install nodejs npm)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise Unavailable("playwright is not installed (pip install playwright)") from None

    bundlers = QUICK_BUNDLERS if ctx.quick else BUNDLERS
    root = install(ctx.log)
    # Builds live beside node_modules: the apps' imports resolve packages upwards from there.
    ws = Workspace(root, root / "builds")
    build_all(APPS, bundlers, ws, ctx.log)
    with running(start_retrospec(ctx, "grouping", jobs=False)) as rs:
        assert isinstance(rs, RetrospecServer)
        status, sdk_js = http_get(rs.port, "/sdk/retrospec.js")
        if status != 200:
            raise RuntimeError(f"GET /sdk/retrospec.js answered {status}")
        base = f"http://127.0.0.1:{rs.port}"
        script = sdk_js.decode("utf-8")
        # Each app built by each bundler is one site, as it would be deployed.
        keys = _sites(rs, [(app.name, b) for app in APPS for b in bundlers])

        def config(release: str, user: str) -> dict[str, Any]:
            app, _bug, bundler, _deploy, _variant = user.split("|")
            return sdk_config(base, keys[(app, bundler)], release, user)

        def launch(pw: Any) -> Any:
            return pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)

        ports = [free_port() for _ in range(DRIVERS)]
        stats = drive_all(launch, APPS, bundlers, ws, script, config, ports, ctx.log)
        data_dir = rs.data_dir
    # The real cluster job, as `retrospec jobs run cluster` runs it.
    settings = load_settings(None, env={}, overrides={"data_dir": str(data_dir)}).settings
    conn = connect(settings.db_path)
    try:
        job = JobContext(
            settings=settings,
            blobs=BlobStore(settings.effective_blob_url),
            write=DirectWriter(conn).call,
            trigger="cli",
        )
        clustered = run_job(job, "cluster")
        labelled, clean, unclustered = _labelled(conn)
    finally:
        conn.close()
    _report(ctx, res, labelled, clean, unclustered, bundlers, stats.sessions, stats.seconds)
    res.notes += [f"step error: {e}" for e in stats.step_errors]
    if clustered.errors:
        res.notes.append(f"cluster job: {clustered.errors} errors ({clustered.message})")


def _report(
    ctx: BenchContext,
    res: BenchResult,
    labelled: list[tuple[str, str]],
    clean: int,
    unclustered: int,
    bundlers: tuple[str, ...],
    sessions: int,
    seconds: float,
) -> None:
    overall = score(labelled)
    classes = {
        f"{bug.app}:{bundler}:{bug.id}": bug.classes
        for app in APPS
        for bug in app.bugs
        for bundler in bundlers
    }
    bugs = sum(len(app.bugs) for app in APPS)
    ctx.log(
        f"{overall.failures} failures from {sessions} sessions ({seconds:.0f} s): precision "
        f"{overall.precision:.3f}, recall {overall.recall:.3f}, {len(overall.split)} split, "
        f"{len(overall.merged)} merged"
    )
    res.add(Figure("precision", "pairwise precision", round(overall.precision, 4), "",
                   target=at_least(TARGET_PRECISION)))  # fmt: skip
    res.add(Figure("recall", "pairwise recall", round(overall.recall, 4), "",
                   target=at_least(TARGET_RECALL)))  # fmt: skip
    res.add(Figure("split", "truth groups split", float(len(overall.split)), "groups",
                   higher_is_better=False))  # fmt: skip
    res.add(Figure("merged", "truth groups merged", float(len(overall.merged)), "groups",
                   target=at_most(0, "0"), higher_is_better=False))  # fmt: skip
    res.add(Figure("truth_groups", "truth groups (bug, network or script)",
                   float(overall.truth_groups), "groups"))  # fmt: skip
    res.add(Figure("clusters", "clusters made", float(overall.clusters), "clusters"))
    res.add(Figure("failures", "failures scored", float(overall.failures), "failures"))
    res.add(Figure("clean_failures", "failures from clean sessions", float(clean), "failures",
                   target=at_most(0, "0"), higher_is_better=False))  # fmt: skip
    if unclustered:
        res.notes.append(f"{unclustered} failures were never clustered")
    res.notes.append(
        f"{len(APPS)} apps, {bugs} bugs, 3 variants each, bundlers {', '.join(bundlers)}, "
        f"2 deploys each; {sessions} sessions in {seconds:.0f} s; without source maps"
    )
    for c in by_class(labelled, classes, overall):
        key = c.name.replace("-", "_")
        res.add(Figure(f"recall_{key}", f"recall: {c.name}", round(c.recall, 4), "",
                       note=f"{c.truth_groups} truth groups"))  # fmt: skip
        detail = f"split {', '.join(c.split) or '-'}; merged {', '.join(c.merged) or '-'}"
        res.notes.append(f"{c.name}: {c.truth_groups} groups, recall {c.recall:.3f}; {detail}")
