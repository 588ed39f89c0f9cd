"""Where Debian's chromium is and how to start it headless here (benchmarks and tests share it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# As root in a closed network: no sandbox, no GPU, and none of the background connections
# chromium would otherwise try (and fail) to make at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's chromium, or $RETROSPEC_CHROMIUM; None when neither is there."""
    explicit = os.environ.get("RETROSPEC_CHROMIUM")
    if explicit:
        return explicit
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")
