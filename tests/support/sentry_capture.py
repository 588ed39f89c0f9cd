"""Record what the real Sentry browser SDK sends, as the protocol tests' fixtures.

    python -m tests.support.sentry_capture tests/fixtures/sentry

Bundles @sentry/browser (tests/support/sentry_sdk.py), serves the shop page from one loopback
origin, points its DSN at a recording server on another, drives Debian chromium through a few
scenarios and writes each request body as NNN-<item types>.bin with its headers in NNN-....json.
The recorder answers 200 with the CORS headers the SDK needs, like RetroSpec does.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from pathlib import Path
from typing import Any

from retrospec.chromium import CHROMIUM_ARGS, chromium_path
from tests.support.sentry_sdk import FLUSH_REPLAY, write_shop
from tests.support.servers import serve_static

KEY = "0123456789abcdef0123456789abcdef"
PROJECT = 42
_KEPT_HEADERS = ("content-type", "content-encoding", "origin", "user-agent")


class Recorder(http.server.ThreadingHTTPServer):
    """Keeps every POST: (path with query, kept headers, body)."""

    requests: list[tuple[str, dict[str, str], bytes]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
        self.send_header("Access-Control-Expose-Headers", "x-sentry-rate-limits, retry-after")

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Headers", "content-type")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        kept = {k: v for k, v in self.headers.items() if k.lower() in _KEPT_HEADERS}
        self.server.requests.append((self.path, kept, body))
        self.send_response(200)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")


def item_types(body: bytes) -> list[str]:
    """The item types of an envelope, in order (reads lengths, so binary payloads are fine)."""
    types: list[str] = []
    pos = body.find(b"\n") + 1
    while 0 < pos < len(body):
        end = body.find(b"\n", pos)
        header = json.loads(body[pos : end if end >= 0 else len(body)])
        types.append(header["type"])
        if end < 0:
            break
        if "length" in header:
            pos = end + 1 + header["length"] + 1
        else:
            nxt = body.find(b"\n", end + 1)
            pos = nxt + 1 if nxt >= 0 else len(body)
    return types


def run(out: Path) -> list[Path]:
    """Run the scenarios and write the fixtures; returns the files written."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(("127.0.0.1", 0), _Handler)
    recorder.requests = []
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    dsn = f"http://{KEY}@127.0.0.1:{recorder.server_address[1]}/{PROJECT}"
    written: list[Path] = []
    site_root = out / ".site"
    site_root.mkdir(exist_ok=True)
    try:
        with serve_static(site_root) as site, sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
            )
            write_shop(site_root, dsn, name="replay.html")
            write_shop(site_root, dsn, name="plain.html", replay={"useCompression": False})
            write_shop(site_root, dsn, name="errors.html", session_rate=0.0)
            for name, actions in (
                ("replay.html", ["add", "email", "wait", "checkout", "flush", "add", "flush"]),
                ("plain.html", ["add", "flush"]),
                ("errors.html", ["add", "checkout", "onerror", "reject", "message", "flush"]),
            ):
                page = browser.new_page()
                page.goto(f"{site.origin}/{name}")
                page.wait_for_function("window.Sentry && Sentry.getReplay()")
                for action in actions:
                    if action in ("add", "checkout"):
                        page.click(f"#{action}")
                    elif action == "email":
                        page.fill("#email", "ada@example.com")
                    elif action == "wait":
                        page.wait_for_timeout(1200)
                    elif action == "onerror":
                        page.add_script_tag(content="checkout();")
                    elif action == "reject":
                        page.evaluate("rejectPayment(); 0")
                    elif action == "message":
                        page.evaluate("Sentry.captureMessage('cart is empty', 'warning'); 0")
                    elif action == "flush":
                        page.wait_for_timeout(300)
                        page.evaluate(FLUSH_REPLAY)
                page.close()
            browser.close()
    finally:
        recorder.shutdown()
    for i, (path, headers, body) in enumerate(recorder.requests, 1):
        stem = f"{i:03d}-{'+'.join(item_types(body)) or 'empty'}"
        (out / f"{stem}.bin").write_bytes(body)
        meta = {"path": path, "headers": headers}
        (out / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        written.append(out / f"{stem}.bin")
    for leftover in site_root.iterdir():
        leftover.unlink()
    site_root.rmdir()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/sentry")
    for path in run(target):
        print(path, path.stat().st_size)
