"""Real `retrospec serve` processes, and plain static servers for test pages on another origin."""

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from retrospec.settings import Settings, load_settings


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A real `retrospec serve` subprocess on a free loopback port."""

    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)
    # Where the server's output goes (default: beside the data dir); tests whose data dir is
    # on a tiny disk keep the log elsewhere.
    log_dir: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        """The server's settings: its data dir and the RETROSPEC_* variables it was given."""
        env = {k: v for k, v in self.env.items() if k.startswith("RETROSPEC_")}
        env["RETROSPEC_DATA_DIR"] = str(self.data_dir)
        return load_settings(None, env=env).settings

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until /healthz answers."""
        self.log_path = (self.log_dir or self.data_dir.parent) / f"serve-{self.port}.log"
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
        # Reap it: a child left running would surface later as another test's ResourceWarning.
        self.proc.kill()
        self.proc.wait()
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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without a log line per request, and tells the browser not to cache them."""

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


@contextlib.contextmanager
def serve_static(root: Path) -> Iterator[StaticSite]:
    """Serve root on http://localhost:<port> (a different origin from 127.0.0.1) until exit."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticSite(root=root, port=int(httpd.server_address[1]))
    finally:
        httpd.shutdown()
        httpd.server_close()


class _LoggingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a tiny body of the type its extension asks for, and logs it."""

    log: list[dict[str, str]]
    TYPES = {
        ".css": "text/css",
        ".png": "image/png",
        ".woff2": "font/woff2",
        ".js": "text/javascript",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.log.append({"path": self.path, "referer": self.headers.get("Referer", "")})
        ext = os.path.splitext(self.path.split("?", 1)[0])[1]
        body = b"body{}" if ext == ".css" else b"x"
        self.send_response(200)
        self.send_header("Content-Type", self.TYPES.get(ext, "text/plain"))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)


@dataclass
class RequestLog:
    """A server on its own loopback port that records every request made to it."""

    port: int
    requests: list[dict[str, str]]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def logging_site(root: Path) -> Iterator[RequestLog]:
    """A request-logging server on a free loopback port until exit."""
    requests: list[dict[str, str]] = []
    handler = type("Handler", (_LoggingHandler,), {"log": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield RequestLog(port=int(httpd.server_address[1]), requests=requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
