"""Drive every bug of every built deploy in chromium, with RetroSpec's SDK sending to a server.

Each session starts clean (no cookies, no stored records, no SDK session) in its deploy's one
browser tab, loads the deploy with the SDK started before the page's own scripts, reaches one
bug through one variant (its user data, UI control or stored records), and flushes. The
session's ground truth travels as the SDK user id (`identify`), which grouping never reads. A
clean session per deploy takes no bug's path; it must send nothing.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from retrospec.bench.corpus.model import App, Step, Variant, Workspace
from retrospec.bench.corpus.server import BLANK_PATH, DeployServer

LOAD_SETTLE_MS = 80  # after the load event: lets frameworks finish their first render
SETTLE_MS = 150  # after the last step
SLOW_SETTLE_MS = 400  # ... when the bug goes through the network or a promise
# Generous: a busy 2-core machine (CI, helpers) can stall a page load for seconds; a step that
# times out loses that session's failure, which would read as a grouping miss.
STEP_TIMEOUT_MS = 10_000
LOAD_TIMEOUT_MS = 30_000
CLEAN = "clean"
SESSION_KEY = "__corpus_session"

# Runs before the page's own scripts on every load of the tab (after the SDK's classic script):
# starts the SDK with this session's config, then seeds the app's stored records, once per
# session, in the page itself only (not in frames, nor on the driver's blank page).
BOOT_JS = """(() => {
  if (window.top !== window || !/^https?:$/.test(location.protocol)) return;
  if (location.pathname === $BLANK) return;
  let session = null;
  try { session = JSON.parse(sessionStorage.getItem($KEY) || "null"); } catch (e) {}
  if (!session) return;
  window.rs = Retrospec.initRetrospec(session.sdk);
  try {
    if (sessionStorage.getItem("__corpus_seeded")) return;
    sessionStorage.setItem("__corpus_seeded", "1");
    for (const [k, v] of Object.entries(session.storage)) localStorage.setItem(k, v);
  } catch (e) {}
})();""".replace("$BLANK", json.dumps(BLANK_PATH)).replace("$KEY", json.dumps(SESSION_KEY))

# On the blank page, between sessions: forget everything the last session stored (the SDK's
# session and anonymous id, the app's records) and leave the next session's config.
RESET_JS = """([key, session]) => {
  localStorage.clear();
  sessionStorage.clear();
  sessionStorage.setItem(key, JSON.stringify(session));
}"""


@dataclass(slots=True)
class DriveStats:
    """What driving saw."""

    sessions: int = 0
    step_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def label(app: str, bug: str, bundler: str, deploy: int, variant: int) -> str:
    """A session's ground truth, carried as its SDK user id."""
    return f"{app}|{bug}|{bundler}|d{deploy}|{variant}"


def _run_step(page: Any, step: Step) -> None:
    action, target, *rest = step
    if action == "fill":
        page.fill(target, rest[0])
    elif action == "press":
        page.press(target, rest[0])
    elif action == "click":
        page.click(target)
    elif action == "dblclick":
        page.dblclick(target)
    elif action == "hover":
        page.hover(target)
    elif action == "check":
        page.check(target)
    elif action == "select":
        page.select_option(target, rest[0])
    elif action == "hash":
        page.evaluate("h => { location.hash = h; }", target)
        page.wait_for_timeout(50)
    elif action == "wait":
        page.wait_for_timeout(int(target))
    else:
        raise ValueError(f"unknown step {step!r}")


def _describe(exc: Exception) -> str:
    """An error's type and first line (playwright's messages go on with a call log)."""
    first = str(exc).partition("\n")[0]
    return f"{type(exc).__name__}: {first}"


def sdk_config(base_url: str, key: str, release: str, user: str) -> dict[str, Any]:
    """The SDK's init options for one session."""
    return {
        "apiBaseUrl": base_url,
        "apiKey": key,
        "release": release,
        "user": {"id": user},
        # Failures only: no recording, so the driving measures grouping, not replays.
        "sessionSampleRate": 0,
        "errorSampleRate": 0,
        "flushIntervalMs": 200,
    }


class _Tab:
    """One browser context and page that every session of a deploy reuses.

    A fresh context per session cost a new renderer process each time, most of a session's
    CPU; a session is as clean in a reused tab once it starts from a blank same-origin page
    with the cookies and both storages cleared (the http cache is off: the server says
    no-store).
    """

    def __init__(self, browser: Any, sdk_js: str) -> None:
        self.browser = browser
        self.init = f"{sdk_js}\n;{BOOT_JS}"
        self.context: Any = None
        self.page: Any = None

    def open(self) -> Any:
        """The tab's page, opened on first use or after a session broke it."""
        if self.page is None or self.page.is_closed():
            self.close()
            self.context = self.browser.new_context()
            self.context.add_init_script(self.init)
            self.page = self.context.new_page()
            self.page.set_default_timeout(STEP_TIMEOUT_MS)
            self.page.set_default_navigation_timeout(LOAD_TIMEOUT_MS)
        return self.page

    def close(self) -> None:
        if self.context is not None:
            self.context.close()
        self.context = self.page = None

    def __enter__(self) -> _Tab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _session(
    tab: _Tab,
    origin: str,
    config: dict[str, Any],
    variant: Variant | None,
    steps: tuple[Step, ...],
    storage: dict[str, str],
    settle_ms: int,
) -> str | None:
    """One session in the deploy's tab; returns a step error, if a step could not be taken."""
    page = tab.open()
    try:
        # Leaving the last session's page ends it (its SDK sends what is left on page hide).
        page.goto(origin + BLANK_PATH)
        tab.context.clear_cookies()
        sid = uuid.uuid4().hex  # the mock API keeps records per `sid` cookie
        tab.context.add_cookies([{"name": "sid", "value": sid, "url": origin}])
        if variant is not None and variant.api_seed:
            tab.context.request.post(
                origin + "/api/_seed",
                data=json.dumps(list(variant.api_seed)),
                headers={"Content-Type": "application/json", "Cookie": f"sid={sid}"},
            )
        page.evaluate(RESET_JS, [SESSION_KEY, {"sdk": config, "storage": storage}])
        page.goto(origin + "/", wait_until="load")
        page.wait_for_timeout(LOAD_SETTLE_MS)
        error = None
        try:
            for step in steps:
                _run_step(page, step)
        except Exception as exc:  # a step that cannot be taken is a corpus defect; keep going
            error = _describe(exc)
        page.wait_for_timeout(settle_ms)
        page.evaluate("window.rs && window.rs.flush()")
        return error
    except Exception as exc:  # the tab itself failed (a load timed out, the page crashed)
        tab.close()
        return _describe(exc)


def drive_deploy(
    browser: Any,
    app: App,
    bundler: str,
    deploy: int,
    ws: Workspace,
    sdk_js: str,
    config: Callable[[str, str], dict[str, Any]],
    port: int,
    stats: DriveStats,
) -> None:
    """Every session of one deployed site: a clean one, then each bug's variants."""
    with (
        DeployServer(ws.dist(app.name, bundler, deploy), app.server_rules, port) as server,
        _Tab(browser, sdk_js) as tab,
    ):
        release = f"{bundler}-{deploy}.0.0"
        where = f"{app.name}/{bundler}/d{deploy}"
        clean = config(release, label(app.name, CLEAN, bundler, deploy, 0))
        err = _session(
            tab, server.origin, clean, None, app.clean_steps, app.clean_storage, SLOW_SETTLE_MS
        )
        stats.sessions += 1
        if err:
            stats.step_errors.append(f"{where}/clean: {err}")
        for bug in app.bugs:
            slow = bool({"network", "unhandledrejection"} & set(bug.expect))
            for i, variant in enumerate(bug.variants):
                err = _session(
                    tab,
                    server.origin,
                    config(release, label(app.name, bug.id, bundler, deploy, i)),
                    variant,
                    variant.steps,
                    variant.local_storage,
                    SLOW_SETTLE_MS if slow else SETTLE_MS,
                )
                stats.sessions += 1
                if err:
                    stats.step_errors.append(f"{where}/{bug.id}/{i}: {err}")


def drive_all(
    launch: Callable[[Any], Any],
    apps: tuple[App, ...],
    bundlers: tuple[str, ...],
    ws: Workspace,
    sdk_js: str,
    config: Callable[[str, str], dict[str, Any]],
    ports: Sequence[int],
    log: Callable[[str], None],
) -> DriveStats:
    """Drive every (app, bundler, deploy), one worker thread per port, each with its own
    playwright and browser (`launch(playwright)` starts one)."""
    from playwright.sync_api import sync_playwright

    # Both deploys of a site go to one worker, so they are served from one origin (its port).
    jobs: queue.SimpleQueue[tuple[App, str]] = queue.SimpleQueue()
    for app in apps:
        for bundler in bundlers:
            jobs.put((app, bundler))
    stats = DriveStats()
    lock = threading.Lock()
    started = time.monotonic()

    def work(port: int) -> None:
        mine = DriveStats()
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                while True:
                    try:
                        app, bundler = jobs.get_nowait()
                    except queue.Empty:
                        break
                    for deploy in (1, 2):
                        t = time.monotonic()
                        drive_deploy(browser, app, bundler, deploy, ws, sdk_js, config, port, mine)
                        log(f"drove {app.name} ({bundler}, deploy {deploy}): "
                            f"{time.monotonic() - t:.1f} s")  # fmt: skip
            finally:
                browser.close()
        with lock:
            stats.sessions += mine.sessions
            stats.step_errors += mine.step_errors

    with ThreadPoolExecutor(len(ports)) as pool:
        for future in [pool.submit(work, port) for port in ports]:
            future.result()
    stats.seconds = time.monotonic() - started
    return stats
