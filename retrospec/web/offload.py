"""Blocking or CPU-heavy request work (argon2, blob reads, gzip) off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from retrospec.runtime import Runtime

T = TypeVar("T")


async def in_pool(rt: Runtime, fn: Callable[[], T]) -> T:
    """Run fn() in the server's I/O pool."""
    return await asyncio.get_running_loop().run_in_executor(rt.io_pool, fn)
