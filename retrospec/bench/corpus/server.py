"""A loopback static server for one deploy, with the small mock API the apps talk to.

Static files come from the deploy's directory (the site root). Under /api/ the server keeps an
in-memory todo list per session (cookie `sid`), answers the app's server-side bugs from its rules,
and 404s anything else.
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retrospec.bench.corpus.model import ServerRule

# One origin for every deploy, as a real site keeps its origin across releases (0: any free port).
DEFAULT_PORT = 47801
BLANK_PATH = "/__corpus/blank"  # the driver's same-origin page between sessions
_sids = itertools.count(1)
_ids = itertools.count(1)


class _State:
    def __init__(self, root: Path, rules: tuple[ServerRule, ...]) -> None:
        self.root = root.resolve()
        self.rules = rules
        self.todos: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server_version = "corpus"
    state: _State

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _sid(self) -> tuple[str, bool]:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "sid" and value:
                return value, False
        return str(next(_sids)), True

    def _send(self, status: int, body: bytes, ctype: str, sid: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if sid is not None:
            self.send_header("Set-Cookie", f"sid={sid}; Path=/")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: object, sid: str | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", sid)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def _api(self, method: str, path: str) -> None:
        sid, new = self._sid()
        set_sid = sid if new else None
        body = self._body()
        for rule in self.state.rules:
            if rule.method == method and re.match(rule.path_regex, path):
                return self._send(rule.status, rule.body.encode(), "application/json", set_sid)
        with self.state.lock:
            todos = self.state.todos.setdefault(sid, [])
            if path == "/api/_seed" and method == "POST":
                todos[:] = [dict(t, id=next(_ids)) for t in (body or [])]
                return self._json(200, todos, set_sid)
            if path == "/api" and method == "GET":
                return self._json(200, {"ok": True}, set_sid)
            if path == "/api/todos":
                if method == "GET":
                    return self._json(200, todos, set_sid)
                if method == "POST":
                    todo = dict(body or {}, id=next(_ids))
                    todos.append(todo)
                    return self._json(201, todo, set_sid)
                if method == "DELETE":
                    todos[:] = [t for t in todos if not t.get("completed")]
                    return self._json(200, todos, set_sid)
            m = re.fullmatch(r"/api/todos/(\d+)", path)
            if m:
                idx = next((i for i, t in enumerate(todos) if str(t["id"]) == m.group(1)), None)
                if idx is None:
                    return self._json(404, {"error": "no such todo"}, set_sid)
                if method == "PUT":
                    todos[idx] = dict(body or {}, id=todos[idx]["id"])
                    return self._json(200, todos[idx], set_sid)
                if method == "DELETE":
                    del todos[idx]
                    return self._json(200, {}, set_sid)
        return self._json(404, {"error": "not found", "path": path}, set_sid)

    def _static(self) -> None:
        path = urlsplit(self.path).path
        target = (self.state.root / path.lstrip("/")).resolve()
        if path.endswith("/"):
            target = target / "index.html"
        if not target.is_relative_to(self.state.root) or not target.is_file():
            return self._send(404, b"not found", "text/plain")
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix in (".js", ".mjs"):
            ctype = "text/javascript"
        self._send(200, target.read_bytes(), ctype)

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        if path == BLANK_PATH:
            return self._send(200, b"<!doctype html><title>blank</title>", "text/html")
        if path == "/api" or path.startswith("/api/"):
            return self._api(self.command, path)
        if self.command in ("GET", "HEAD"):
            return self._static()
        self._send(405, b"", "text/plain")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class DeployServer:
    """Serves one deploy directory on 127.0.0.1 (a free port) until stopped."""

    def __init__(
        self, root: Path, rules: tuple[ServerRule, ...] = (), port: int = DEFAULT_PORT
    ) -> None:
        handler = type("Handler", (_Handler,), {"state": _State(root, rules)})
        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def __enter__(self) -> DeployServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
