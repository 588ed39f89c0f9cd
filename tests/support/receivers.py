"""Real receivers for alerts: an SMTP server (aiosmtpd) and an HTTP webhook endpoint on loopback.

Both run in threads of the test process and keep what they received, so a test can assert on
exactly the messages a real server (in-process or a `retrospec serve` subprocess) delivered.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.support.servers import free_port


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1:<port>; `messages` holds every accepted message, parsed."""

    def __init__(
        self,
        port: int | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        reject_rcpt: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.reject_rcpt = reject_rcpt  # answer RCPT TO with this code (e.g. 550, 451)
        self.starttls_used = False
        self._controller: Any = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.reject_rcpt is not None:
            return f"{self.reject_rcpt} mailbox not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            if session.ssl is not None:
                self.starttls_used = True
        return "250 Message accepted"

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {}
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=self.require_starttls)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        """Block until at least count messages arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} e-mails, got {len(self.messages)}")


@dataclass
class Hit:
    """One request the HTTP receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """A webhook endpoint on 127.0.0.1:<port>; answers `status` (settable) and keeps each hit.

    stop() closes the listening socket (connections are refused), start() binds the same port
    again: a receiver that is down for a while.
    """

    port: int = field(default_factory=free_port)
    status: int = 200
    hits: list[Hit] = field(default_factory=list)
    delay: float = 0.0
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                if 200 <= receiver.status < 300:
                    receiver.hits.append(Hit(self.path, dict(self.headers.items()), body))
                payload = b"ok" if receiver.status < 400 else b"nope"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait(self, count: int, timeout: float = 20.0) -> list[Hit]:
        """Block until at least count accepted hits arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.hits) >= count:
                return list(self.hits)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} webhook calls, got {len(self.hits)}")


def silent_port() -> tuple[socket.socket, int]:
    """A socket that accepts connections and never answers (a hung receiver); close it after."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, int(sock.getsockname()[1])


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost made with the openssl command (cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise AssertionError("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
