"""A small real filesystem for the disk tests: a tmpfs of a few MB, mounted for one test.

Mounting needs root (or CAP_SYS_ADMIN); where that is not allowed the disk tests that need a
real full disk skip with the reason, and the settings-based floor tests cover the rules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


def can_mount() -> str | None:
    """None when tmpfs mounts work here, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    return None


@contextlib.contextmanager
def small_disk(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of size_mb mounted at where (created), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PermissionError(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def free_bytes(path: Path) -> int:
    """Free bytes on path's filesystem."""
    return shutil.disk_usage(path).free
