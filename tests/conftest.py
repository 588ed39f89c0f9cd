"""Shared fixtures: fresh data dirs, in-process apps, real `retrospec serve` processes, chromium."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrospec.chromium import CHROMIUM_ARGS, chromium_path
from retrospec.settings import Settings, load_settings
from retrospec.sites import Site, create_site
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import prepare_database

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: a private data dir, no config file, no environment."""
    values = {"data_dir": str(data_dir), **overrides}
    return load_settings(None, env={}, overrides=values).settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings rooted in this test's tmp_path, with the database migrated."""
    s = make_settings(tmp_path / "data")
    prepare_database(s.db_path)
    return s


def add_site(
    settings: Settings, name: str = "shop", origins: list[str] | None = None
) -> tuple[Site, str]:
    """Create a site directly in SQLite; returns (site, plain key)."""
    prepare_database(settings.db_path)
    conn = connect(settings.db_path)
    try:
        return DirectWriter(conn).call(lambda c: create_site(c, name, origins or []))
    finally:
        conn.close()


@dataclass
class ServerProcess:
    """A real `retrospec serve` subprocess on a free loopback port."""

    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        return make_settings(self.data_dir)

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until /healthz answers."""
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "retrospec", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"retrospec serve exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"retrospec serve did not answer /healthz:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server and wait; returns its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.stop(signal.SIGKILL)


def server_env(data_dir: Path, **settings_env: str) -> dict[str, str]:
    """Environment for a server subprocess: only our settings, none from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    env["RETROSPEC_DATA_DIR"] = str(data_dir)
    env["RETROSPEC_LOG_LEVEL"] = "warning"
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in settings_env.items():
        env[f"RETROSPEC_{key.upper()}"] = value
    return env


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: serve(**settings) starts a real server with those settings as RETROSPEC_* env."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **settings_env: Any) -> ServerProcess:
        ddir = data_dir or tmp_path / f"data{len(started)}"
        ddir.mkdir(parents=True, exist_ok=True)
        env = server_env(ddir, **{k: str(v) for k, v in settings_env.items()})
        server = ServerProcess(data_dir=ddir, port=free_port(), env=env)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of chromium; on CI a missing browser fails the test instead of skipping it."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI=true: browser tests must not be skipped)")
        pytest.skip("chromium is not installed; `apt-get install chromium` to run browser tests")
    return path


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Any]:
    """Headless Debian chromium driven by playwright, one per test module.

    Module scope on purpose: playwright's sync API keeps its event loop marked as running in the
    main thread while it is open, which would break asyncio.run() in later, unrelated tests.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@dataclass
class StaticSite:
    """A plain HTTP server for test pages, on its own origin (not the RetroSpec server's)."""

    root: Path
    port: int

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def write(self, name: str, html: str) -> str:
        """Write a page and return its URL."""
        (self.root / name).write_text(html, encoding="utf-8")
        return f"{self.origin}/{name}"


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[StaticSite]:
    """Serve tmp_path/site on http://localhost:<port> (a different origin from 127.0.0.1)."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticSite(root=root, port=int(httpd.server_address[1]))
    finally:
        httpd.shutdown()
        httpd.server_close()
