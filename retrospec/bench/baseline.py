"""The bare baseline: a minimal ASGI app doing the same durable SQLite write as ingest.

Run as `python -m retrospec.bench.baseline --port P --data-dir D` under the same uvicorn settings
as `retrospec serve` (one worker, httptools, uvloop). It reads the body, decodes it with msgspec,
and hands the same rows ingest writes (the session upsert, the batch's chunk row, the failure
rows, with the very same SQL statements, written the same way: multi-row, storage.db.insert_rows)
to one group-committing writer thread (WAL, the same synchronous mode), answering 202 only after
COMMIT. What it leaves out is what makes RetroSpec a product rather than a bare write: keys,
origins, rate limits, caps, validation, idempotency checks and error answers. POST /chunk also
compresses the events like ingest (one zstd frame; on the event loop, in a thread pool when
big), and the writer thread writes the frames of each group as one segment file (temp name +
rename) before BEGIN, the rows pointing at (key, offset, length), like ingest. POST /null answers
202 without touching anything: the load generator's own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from retrospec.ingest.prepare import INLINE_COMPRESS_BYTES
from retrospec.ingest.write import CHUNK_INSERT, FAILURE_INSERT, SESSION_UPSERT
from retrospec.storage.db import insert_rows

# The statements ingest runs, in the order it runs them.
_ORDER = (SESSION_UPSERT, CHUNK_INSERT, FAILURE_INSERT)


class _Session(msgspec.Struct):
    id: str
    user_agent: str | None = None
    url: str | None = None
    release: str | None = None


class _Failure(msgspec.Struct):
    kind: str
    ts: int
    type: str | None = None
    message: str | None = None
    stack: str | None = None
    url: str | None = None
    method: str | None = None
    request_url: str | None = None
    status: int | None = None
    duration_ms: float | None = None


class _Envelope(msgspec.Struct):
    session: _Session
    seq: int
    events: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    failures: list[_Failure] = []


_DECODE = msgspec.json.Decoder(_Envelope).decode
_PAYLOAD = msgspec.json.Encoder().encode
_ACK = b'{"ok":true}'
_ACK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"11")]


class _GroupWriter:
    """One thread, one connection: drain the queue, segment, insert, COMMIT, answer all."""

    def __init__(self, path: Path, synchronous: str, blob_dir: Path) -> None:
        self.path = path
        self.synchronous = synchronous
        self.blob_dir = blob_dir
        self.made: set[str] = set()
        self.segments = 0
        self.q: queue.SimpleQueue[tuple[_Writes, asyncio.Future[None]] | None]
        self.q = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="baseline-writer", daemon=True)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread.start()

    def stop(self) -> None:
        self.q.put(None)
        self.thread.join()

    async def write(self, writes: _Writes) -> None:
        assert self.loop is not None
        fut = self.loop.create_future()
        self.q.put((writes, fut))
        await fut

    def _run(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout = 30000")
        assert self.loop is not None
        loop = self.loop
        while True:
            first = self.q.get()
            if first is None:
                break
            group = [first]
            while len(group) < 512:
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.q.put(None)
                    break
                group.append(nxt)
            self._segment([writes for writes, _ in group])
            by_sql: dict[str, list[tuple[Any, ...]]] = {sql: [] for sql in _ORDER}
            for writes, _ in group:
                for sql, rows in writes:
                    by_sql[sql].extend(rows)
            conn.execute("BEGIN IMMEDIATE")
            for sql, rows in by_sql.items():
                insert_rows(conn, sql, rows)
            conn.execute("COMMIT")
            # One wake-up of the event loop per group, not per request.
            loop.call_soon_threadsafe(_resolve, [fut for _, fut in group])
        conn.close()

    def _segment(self, group: list[_Writes]) -> None:
        """Write the group's compressed chunks as one file, then point their rows into it."""
        pending = [w for w in group if isinstance(w[-1], _Frame)]
        if not pending:
            return
        at = time.gmtime()
        parent = f"{self.blob_dir}/chunks/bench/{time.strftime('%Y%m%d', at)}"
        if parent not in self.made:
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        self.segments += 1
        key = f"{parent}/{time.strftime('%H%M%S', at)}-{self.segments:06d}.seg"
        offset = 0
        frames = []
        for writes in pending:
            frame = writes.pop()
            assert isinstance(frame, _Frame)
            _sql, rows = writes[1]
            row = rows[0]
            rows[0] = (*row[:7], key, offset, len(frame.data))
            frames.append(frame.data)
            offset += len(frame.data)
        tmp = key + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(b"".join(frames))
        os.replace(tmp, key)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


class BaselineApp:
    """The ASGI callable."""

    def __init__(self, data_dir: Path, synchronous: str) -> None:
        self.data_dir = data_dir
        self.blob_dir = data_dir / "blobs"
        self.writer = _GroupWriter(data_dir / "retrospec.sqlite3", synchronous, self.blob_dir)
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.zstd = threading.local()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        parts: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        path = scope["path"]
        if path == "/healthz":
            await _answer(send, 200)
            return
        if path != "/null":
            body = b"".join(parts)
            env = _DECODE(body)
            now = int(time.time() * 1000)
            frame: _Frame | None = None
            if path == "/chunk" and len(env.events):
                events = bytes(env.events)
                if len(events) <= INLINE_COMPRESS_BYTES:  # as ingest does
                    frame = self._compress(events)
                else:
                    loop = asyncio.get_running_loop()
                    frame = await loop.run_in_executor(self.pool, self._compress, events)
            await self.writer.write(_rows(env, now, frame))
        await _answer(send, 202)

    def _compress(self, events: bytes) -> _Frame:
        comp = getattr(self.zstd, "c", None)
        if comp is None:
            comp = self.zstd.c = zstandard.ZstdCompressor(level=3)
        return _Frame(comp.compress(events), len(events))

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.writer.start(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.writer.stop()
                self.pool.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


class _Frame(msgspec.Struct):
    data: bytes
    raw: int


# (sql, rows) per statement, then the chunk's frame while it waits for its segment.
_Writes = list[Any]


def _rows(env: _Envelope, now: int, frame: _Frame | None) -> _Writes:
    raw, stored = (frame.raw, len(frame.data)) if frame else (0, 0)
    s = env.session
    session = (
        s.id, "bench", now, now, None, None, None, None, None, s.user_agent, None, None,
        s.url, s.url, s.release, None, None, 1 if frame else 0, len(env.failures), raw, stored,
        "pending" if frame else "none", 0,
    )  # fmt: skip
    failures = [
        (
            "bench",
            s.id,
            env.seq,
            f.kind,
            f.type,
            f.message,
            f.url,
            f.ts,
            now,
            f.method,
            f.request_url,
            f.status,
            f.duration_ms,
            s.release,
            None,
            None,
            None,
            None,
            _PAYLOAD({"stack": f.stack}) if f.stack else None,
        )
        for f in env.failures
    ]
    chunk_row = (s.id, env.seq, "bench", now, raw, stored, len(env.failures), None, None, None)
    writes: _Writes = [
        (SESSION_UPSERT, [session]),
        (CHUNK_INSERT, [chunk_row]),
        (FAILURE_INSERT, failures),
    ]
    if frame is not None:
        writes.append(frame)
    return writes


async def _answer(send: Any, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _ACK_HEADERS})
    await send({"type": "http.response.body", "body": _ACK})


def main() -> None:
    """Prepare the same schema as RetroSpec, then serve the baseline app."""
    import uvicorn

    from retrospec.storage.migrations import prepare_database

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--synchronous", default="normal")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    db = args.data_dir / "retrospec.sqlite3"
    # The same tables and indexes as RetroSpec; the writer leaves foreign keys off (SQLite's
    # default), so the "bench" site needs no sites row.
    prepare_database(db, synchronous=args.synchronous)
    uvicorn.run(
        BaselineApp(args.data_dir, args.synchronous),
        host="127.0.0.1",
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
