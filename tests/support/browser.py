"""Test pages that load the SDK from a real server, and reading that server's database while
chromium drives them."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.support.servers import ServerProcess

T = TypeVar("T")

# Installed before the SDK loads, so the SDK's "native" fetch is this spy: the test can see every
# ingest attempt the SDK makes (start, end, status or "error", Retry-After).
INGEST_SPY = """
<script>
window.__ingest = [];
(function () {
  const realFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : input.url;
    if (url.indexOf("/api/v1/ingest") < 0) return realFetch.apply(this, arguments);
    const body = init && init.body;
    const rec = { start: Date.now(), keepalive: !!(init && init.keepalive),
                  type: init && init.headers && init.headers["Content-Type"],
                  gzip: body instanceof Uint8Array && body[0] === 0x1f && body[1] === 0x8b };
    window.__ingest.push(rec);
    return realFetch.apply(this, arguments).then(
      (res) => { rec.status = res.status; rec.end = Date.now();
                 rec.retryAfter = res.headers.get("Retry-After"); return res; },
      (err) => { rec.status = "error"; rec.end = Date.now(); throw err; });
  };
})();
</script>
"""


def sdk_page(
    server: ServerProcess,
    key: str,
    *,
    body: str = "",
    options: dict[str, Any] | None = None,
    spy: bool = False,
) -> str:
    """A test page that loads /sdk/retrospec.js from the server and keeps the client as `rs`."""
    config = {"apiBaseUrl": server.base_url, "apiKey": key, **(options or {})}
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>SDK test</title><link rel="icon" href="data:,">
{INGEST_SPY if spy else ""}
<script src="{server.base_url}/sdk/retrospec.js"></script>
<script>window.rs = Retrospec.initRetrospec({json.dumps(config)});</script>
</head><body>
<h1>Test shop</h1>
{body}
</body></html>"""


def wait_for(fn: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll fn until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def query(db: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    """Rows from a fresh read-only connection (the server keeps writing meanwhile)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()
