"""The compute process: CPU-heavy job work (fingerprinting, replay builds) off the server's GIL."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

# The child's scheduling priority (nice) relative to the server: on a busy machine the kernel
# gives the CPU to ingest first, and job work takes what is left.
COMPUTE_NICENESS = 10


def _lower_priority() -> None:
    with contextlib.suppress(OSError):  # a platform or sandbox without nice keeps its priority
        os.nice(COMPUTE_NICENESS)


class ComputePool:
    """CPU-heavy job work in one child process.

    In the server, job threads share the GIL with the event loop; a second process gives that
    work its own interpreter, so ingest keeps its latency while jobs run. The process starts on
    first use (forkserver: a clean child, not a fork of a threaded server) and stops after
    `idle_s` without work, so an idle server carries no extra memory.
    """

    def __init__(self, idle_s: float = 60.0) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._last_used = 0.0

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) in the child and wait (fn and its arguments must pickle)."""
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=context, initializer=_lower_priority
                )
            self._busy += 1
            pool = self._pool
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            # The child died (killed, out of memory): start a fresh one on the next call.
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise
        finally:
            with self._lock:
                self._busy -= 1
                self._last_used = time.monotonic()

    def reap(self) -> None:
        """Stop the child when it has been idle for idle_s."""
        with self._lock:
            idle = time.monotonic() - self._last_used > self.idle_s
            if self._pool is None or self._busy or not idle:
                return
            pool, self._pool = self._pool, None
        pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the child now."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
