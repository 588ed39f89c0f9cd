"""sdk-size and first-failure: what a new user downloads and how soon they see their first issue."""

from __future__ import annotations

import gzip
import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from retrospec.bench.runner import (
    PLAYWRIGHT_EXTRA,
    BenchContext,
    BenchResult,
    Figure,
    Unavailable,
    at_most,
    free_port,
    http_get,
    require_module,
)
from retrospec.chromium import CHROMIUM_ARGS, chromium_path
from retrospec.paths import resource_root
from retrospec.sdk import bundles

SDK_BUDGET = 32 * 1024


def run_sdk_size(ctx: BenchContext, res: BenchResult) -> None:
    """Gzip size of /sdk/retrospec.js and /sdk/retrospec.mjs as served, recorder included."""
    built = bundles()
    for key, label, bundle in (
        ("script", "/sdk/retrospec.js", built.script),
        ("module", "/sdk/retrospec.mjs", built.module),
    ):
        size = len(gzip.compress(bundle.body, compresslevel=9))
        res.add(
            Figure(
                f"{key}_gzip_kb",
                f"{label} gzip (recorder included)",
                size / 1024,
                "KB",
                target=at_most(SDK_BUDGET / 1024, "≤ 32 KB") if key == "script" else None,
                higher_is_better=False,
            )
        )
        res.add(Figure(f"{key}_raw_kb", f"{label} raw", len(bundle.body) / 1024, "KB"))
    res.notes.append("gzip level 9, as the server sends it to browsers that accept gzip.")


def _install(workdir: Path) -> tuple[Path, float]:
    """`pip install .` from this checkout into a fresh venv; returns (retrospec script, seconds)."""
    root = resource_root()
    if not (root / "pyproject.toml").is_file():
        raise Unavailable("not a source checkout, so there is nothing to `pip install .` from")
    started = time.monotonic()
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(root)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return venv / "bin" / "retrospec", time.monotonic() - started


def run_first_failure(ctx: BenchContext, res: BenchResult) -> None:
    """Fresh install → `retrospec serve` in an empty dir → clicks on /demo → issue in SQLite."""
    chromium = chromium_path()
    if chromium is None:
        raise Unavailable("chromium is not installed (apt-get install chromium)")
    require_module("playwright", PLAYWRIGHT_EXTRA)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="first-", dir=ctx.workdir))
    if ctx.quick:
        # CI keeps --quick under two minutes: reuse this installation instead of a fresh one.
        command, install_s = [sys.executable, "-m", "retrospec"], None
    else:
        script, install_s = _install(work)
        command = [str(script)]
    empty = work / "empty"
    empty.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    env["RETROSPEC_LOG_LEVEL"] = "warning"
    started = time.monotonic()
    proc = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        cwd=empty,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if http_get(port, "/healthz", timeout=1)[0] == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if proc.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError("retrospec serve did not come up")
            time.sleep(0.05)
        serve_s = time.monotonic() - started
        db = empty / "retrospec-data" / "retrospec.sqlite3"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            # The demo site promotes like any site: the same failure in two sessions (two
            # visitors, here two browser contexts) makes the issue.
            pages = []
            for _ in range(2):
                page = browser.new_context().new_page()
                page.goto(f"{base}/demo")
                page.wait_for_function("window.Retrospec !== undefined")
                pages.append(page)
            pages[0].click("button[data-fail='error']")
            clicked = time.monotonic()
            pages[1].click("button[data-fail='error']")
            visible_s = _wait_for_issue(db, clicked)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    total = (install_s or 0.0) + serve_s + visible_s
    if install_s is not None:
        res.add(Figure("install_s", "pip install . into a fresh venv", install_s, "s",
                       higher_is_better=False))  # fmt: skip
    res.add(Figure("serve_s", "retrospec serve ready (empty dir)", serve_s, "s",
                   higher_is_better=False))  # fmt: skip
    res.add(Figure("click_to_issue_s", "second demo click → issue visible", visible_s, "s",
                   higher_is_better=False))  # fmt: skip
    res.add(
        Figure(
            "total_s",
            "install to first captured failure" if install_s is not None else "start to issue",
            total,
            "s",
            target=at_most(60, "≤ 60 s") if install_s is not None else None,
            higher_is_better=False,
        )
    )
    res.notes.append(
        "fresh venv, `pip install .` (dependencies from PyPI or pip's cache), `retrospec serve` "
        "in an empty directory, chromium opens /demo in two sessions and clicks 'Uncaught "
        "TypeError' in each; the clock stops when the issue is in the issue list (the demo site "
        "promotes like any site: the same failure in two sessions)."
        if install_s is not None
        else "--quick skips the install and reuses this interpreter's RetroSpec."
    )


def _wait_for_issue(db: Path, since: float, timeout: float = 60.0) -> float:
    """Seconds from `since` until the demo site has an open issue (polled like the dashboard)."""
    from retrospec.issues.queries import list_issues
    from retrospec.storage.db import reading

    while time.monotonic() - since < timeout:
        # The database exists: the server answered /healthz after migrating it.
        with reading(db) as conn:
            _items, total = list_issues(conn, site="demo", status="open", limit=1)
        if total:
            return time.monotonic() - since
        time.sleep(0.05)
    raise RuntimeError("no issue appeared within a minute of the demo click")
