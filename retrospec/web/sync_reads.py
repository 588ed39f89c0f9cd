"""Run a module's sync read function (sites.py has no async API) off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from retrospec.runtime import Runtime
from retrospec.storage.db import connect

T = TypeVar("T")


def _read(rt: Runtime, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn = connect(rt.settings.db_path, readonly=True)
    try:
        return fn(conn)
    finally:
        conn.close()


async def sync_read(rt: Runtime, fn: Callable[[sqlite3.Connection], T]) -> T:
    """fn(conn) on a short-lived read-only connection in the I/O pool."""
    return await asyncio.get_running_loop().run_in_executor(rt.io_pool, _read, rt, fn)


async def in_pool(rt: Runtime, fn: Callable[[], T]) -> T:
    """Run blocking or CPU-heavy work (argon2, blob reads, gzip) in the I/O pool."""
    return await asyncio.get_running_loop().run_in_executor(rt.io_pool, fn)
