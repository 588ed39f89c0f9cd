"""storage: stored bytes per recorded minute of real sessions recorded by the SDK in chromium."""

from __future__ import annotations

import contextlib
import functools
import http.server
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrospec.bench.runner import (
    PLAYWRIGHT_EXTRA,
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    Unavailable,
    at_most,
    http_get,
    require_module,
    running,
    start_retrospec,
)
from retrospec.chromium import CHROMIUM_ARGS, chromium_path
from retrospec.jobs.context import JobContext
from retrospec.paths import assets_dir
from retrospec.scheduler import run_job
from retrospec.settings import load_settings
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter, connect

TARGET_BYTES_PER_MIN = 60_000.0
# What a person does on each page: elements to click and fields to type into.
PAGES: dict[str, tuple[str, str]] = {
    "shop": ("#filters button, .card button, #pay, header nav a", "#search, #checkout input"),
    "docs": ("nav.toc a, summary, .feedback button", "#comment"),
    "demo": (
        "button.add, nav a[data-step], button[type=submit], #pay",
        "input:not([type=password])",
    ),
}
_FLUSH = "() => { const c = window[Symbol.for('retrospec.client')]; return c && c.flush(); }"
_WORDS = ["ada", "lovelace", "221b", "baker", "street", "coupon", "express", "please", "thanks"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _static_site(root: Path) -> Iterator[str]:
    """Serve root on http://localhost:<port> (another origin than the RetroSpec server)."""
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _act(page: Any, name: str, rng: random.Random, seconds: float) -> None:
    """Scripted browsing: mouse moves, scrolling, clicks and typing for `seconds`."""
    clicks, fields = PAGES[name]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pick = rng.random()
        try:
            if pick < 0.3:
                page.mouse.move(rng.randint(0, 1200), rng.randint(0, 700), steps=rng.randint(3, 12))
            elif pick < 0.5:
                page.mouse.wheel(0, rng.choice([-300, 250, 400, 600]))
            elif pick < 0.8:
                targets = page.locator(clicks)
                count = targets.count()
                if count:
                    targets.nth(rng.randrange(count)).click(timeout=1000)
            else:
                inputs = page.locator(fields)
                count = inputs.count()
                if count:
                    field = inputs.nth(rng.randrange(count))
                    field.click(timeout=1000)
                    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
                    page.keyboard.type(text, delay=rng.randint(40, 110))
        except Exception as exc:  # an element scrolled away or hidden: a person would move on
            if "Timeout" not in type(exc).__name__ and "not visible" not in str(exc):
                raise
        page.wait_for_timeout(rng.randint(150, 700))


@dataclass(slots=True)
class Recorded:
    """One recorded session's sizes."""

    page: str
    raw: int
    stored: int
    artifact: int
    minutes: float


def _pages_dir(ctx: BenchContext, rs: RetrospecServer) -> Path:
    from retrospec.sdk import script_snippet

    root = ctx.scratch("storage-site")
    snippet = script_snippet(f"http://127.0.0.1:{rs.port}", rs.key)
    for name in ("shop", "docs"):
        html = (assets_dir() / "bench" / f"{name}.html").read_text(encoding="utf-8")
        (root / f"{name}.html").write_text(html.replace("<!--RETROSPEC-->", snippet), "utf-8")
    return root


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Record each page in chromium, build the replays, then size chunks and artifacts."""
    chromium = chromium_path()
    if chromium is None:
        raise Unavailable("chromium is not installed (apt-get install chromium)")
    require_module("playwright", PLAYWRIGHT_EXTRA)
    from playwright.sync_api import sync_playwright

    seconds = 4.0 if ctx.quick else 60.0
    rng = random.Random(17)
    wall: dict[str, float] = {}
    with running(start_retrospec(ctx, "storage", jobs=False)) as rs:
        assert isinstance(rs, RetrospecServer)
        if http_get(rs.port, "/sdk/retrospec.js")[0] != 200:
            raise Unavailable("not available yet: GET /sdk/retrospec.js does not answer 200")
        root = _pages_dir(ctx, rs)
        with _static_site(root) as origin, sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                urls = {
                    "shop": f"{origin}/shop.html",
                    "docs": f"{origin}/docs.html",
                    "demo": f"http://127.0.0.1:{rs.port}/demo",
                }
                for name, url in urls.items():
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    page = context.new_page()
                    t0 = time.monotonic()
                    page.goto(url, wait_until="load")
                    _act(page, name, rng, seconds)
                    page.evaluate(_FLUSH)
                    wall[name] = time.monotonic() - t0
                    context.close()
                    ctx.log(f"recorded {name} for {wall[name]:.0f} s")
            finally:
                browser.close()
        time.sleep(0.5)
        data_dir = rs.data_dir
    sessions = _build_and_measure(data_dir, wall)
    _report(ctx, res, sessions, seconds)


def _page_of(url: str | None) -> str:
    for name in ("shop", "docs", "demo"):
        if url and name in url:
            return name
    return "other"


def _build_and_measure(data_dir: Path, wall: dict[str, float]) -> list[Recorded]:
    settings = load_settings(None, env={}, overrides={"data_dir": str(data_dir)}).settings
    conn = connect(settings.db_path)
    try:
        job = JobContext(
            settings=settings,
            blobs=BlobStore(settings.effective_blob_url),
            write=DirectWriter(conn).call,
        )
        run_job(job, "replays")
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT entry_url, raw_bytes, stored_bytes, coalesce(replay_bytes, 0) AS artifact, "
            "replay_start_ts, replay_end_ts FROM sessions WHERE chunks > 0"
        ).fetchall()
    finally:
        conn.close()
    out = []
    for r in rows:
        name = _page_of(r["entry_url"])
        if r["replay_start_ts"] and r["replay_end_ts"]:
            minutes = (r["replay_end_ts"] - r["replay_start_ts"]) / 60_000
        else:
            minutes = wall.get(name, 0.0) / 60
        out.append(Recorded(name, r["raw_bytes"], r["stored_bytes"], r["artifact"], minutes))
    return out


def _report(ctx: BenchContext, res: BenchResult, sessions: list[Recorded], seconds: float) -> None:
    if not sessions:
        raise RuntimeError("no recorded session reached the server")
    minutes = sum(s.minutes for s in sessions) or 1e-9
    raw = sum(s.raw for s in sessions)
    stored = sum(s.stored for s in sessions)
    artifact = sum(s.artifact for s in sessions)
    res.add(
        Figure(
            "stored_bytes_per_min",
            "stored (chunks + replay) per min",
            (stored + artifact) / minutes / 1000,
            "kB/min",
            target=at_most(TARGET_BYTES_PER_MIN / 1000, "≤ 60 kB/min"),
            higher_is_better=False,
        )
    )
    res.add(
        Figure(
            "chunk_bytes_per_min",
            "chunks per min (zstd)",
            stored / minutes / 1000,
            "kB/min",
            higher_is_better=False,
        )
    )
    res.add(
        Figure(
            "artifact_bytes_per_min",
            "replay artifact per min",
            artifact / minutes / 1000,
            "kB/min",
            higher_is_better=False,
        )
    )
    res.add(
        Figure(
            "raw_bytes_per_min",
            "raw rrweb JSON per min",
            raw / minutes / 1000,
            "kB/min",
            higher_is_better=False,
        )
    )
    res.add(
        Figure(
            "compression_ratio", "compression (raw / chunks)", raw / stored if stored else 0, "x"
        )
    )
    for name in ("shop", "docs", "demo"):
        mine = [s for s in sessions if s.page == name]
        m = sum(s.minutes for s in mine)
        if mine and m > 0:
            total = sum(s.stored + s.artifact for s in mine)
            res.add(
                Figure(
                    f"{name}_bytes_per_min",
                    f"{name}: stored per min",
                    total / m / 1000,
                    "kB/min",
                    higher_is_better=False,
                )
            )
    res.add(Figure("recorded_minutes", "recorded time", minutes * 60, "s"))
    res.notes.append(
        f"{len(sessions)} sessions (shop, docs and /demo pages, ~{seconds:g} s each of scripted "
        "mouse moves, scrolling, clicks and typing in headless chromium, 1280x800); minutes from "
        "the replay's first to last event; chunks are kept beside the built replay until "
        "retention, so both count."
    )
