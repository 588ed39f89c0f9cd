"""The real Sentry browser SDK for tests: @sentry/browser (with Replay) from npm, bundled by
esbuild into one IIFE exposing `window.Sentry`, built once into a cache directory.

The cache is ~/.cache/retrospec-tests (or $RETROSPEC_TEST_CACHE), keyed by the pinned versions;
a lock file keeps parallel test runs from building it twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

SENTRY_VERSION = "11.12.0"
ESBUILD_VERSION = "0.25.12"


class SdkUnavailable(RuntimeError):
    """npm (Node.js) is missing or the build failed."""


def cache_root() -> Path:
    """Where test-time downloads and builds are kept between runs."""
    configured = os.environ.get("RETROSPEC_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "retrospec-tests"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(args: list[str], cwd: Path, timeout: float) -> None:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise SdkUnavailable(f"{' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}")


def sentry_bundle() -> Path:
    """Path of the bundled SDK (built on first use; needs npm and the npm registry)."""
    root = cache_root() / f"sentry-browser-{SENTRY_VERSION}-esbuild-{ESBUILD_VERSION}"
    bundle = root / "sentry.bundle.js"
    if bundle.exists():
        return bundle
    npm = shutil.which("npm")
    if npm is None:
        raise SdkUnavailable("npm is not installed (apt-get install nodejs npm)")
    with _locked(cache_root() / ".sentry-build.lock"):
        if bundle.exists():
            return bundle
        work = root / "build"
        work.mkdir(parents=True, exist_ok=True)
        (work / "package.json").write_text(
            json.dumps(
                {
                    "private": True,
                    "dependencies": {
                        "@sentry/browser": SENTRY_VERSION,
                        "esbuild": ESBUILD_VERSION,
                    },
                }
            ),
            encoding="utf-8",
        )
        # esbuild's binary comes from its platform package; no install scripts are needed.
        _run(
            [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            work,
            timeout=600,
        )
        (work / "entry.js").write_text("export * from '@sentry/browser';\n", encoding="utf-8")
        tmp = root / "sentry.bundle.js.tmp"
        _run(
            [
                str(work / "node_modules" / ".bin" / "esbuild"),
                "entry.js",
                "--bundle",
                "--format=iife",
                "--global-name=Sentry",
                "--minify",
                "--target=es2020",
                f"--outfile={tmp}",
            ],
            work,
            timeout=300,
        )
        tmp.replace(bundle)
    return bundle


# --- a shop page that carries the SDK --------------------------------------------------------

APP_JS = """
function computeCartTotal(cart) { return cart.amount * 2; }
function checkout() { return computeCartTotal(undefined); }
document.getElementById("add").addEventListener("click", function addToCart() {
  var li = document.createElement("li");
  li.textContent = "Blue shoes";
  document.getElementById("cart").appendChild(li);
});
document.getElementById("checkout").addEventListener("click", function onCheckoutClick() {
  document.getElementById("status").textContent = "Payment failed";
  checkout();
});
window.rejectPayment = function rejectPayment() {
  return Promise.reject(new Error("payment gateway timeout"));
};
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title><link rel="icon" href="data:,">
<script src="sentry.bundle.js"></script>
<script>
  Sentry.init(Object.assign({{
    dsn: {dsn},
    release: "shop@1.0.0",
    environment: "prod",
    integrations: [Sentry.replayIntegration({replay})],
    replaysSessionSampleRate: {session_rate},
    replaysOnErrorSampleRate: 1.0,
  }}, {extra}));
</script>
</head><body>
<h1>Your cart</h1>
<ul id="cart"></ul>
<label>Email <input id="email" type="email"></label>
<button id="add" type="button">Add to cart</button>
<button id="checkout" type="button">Checkout</button>
<p id="status"></p>
<script src="app.js"></script>
</body></html>
"""


def write_shop(
    root: Path,
    dsn: str,
    *,
    name: str = "shop.html",
    session_rate: float = 1.0,
    replay: dict[str, object] | None = None,
    extra: dict[str, object] | None = None,
) -> str:
    """Write the shop page (and the SDK bundle and app script beside it); returns the file name."""
    shutil.copy(sentry_bundle(), root / "sentry.bundle.js")
    (root / "app.js").write_text(APP_JS, encoding="utf-8")
    html = PAGE.format(
        dsn=json.dumps(dsn),
        session_rate=session_rate,
        # Replays shorter than 5 s are not sent by default; tests flush sooner than that.
        replay=json.dumps({"minReplayDuration": 0, **(replay or {})}),
        extra=json.dumps(extra or {}),
    )
    (root / name).write_text(html, encoding="utf-8")
    return name


# Flush the replay if one is recording (flush() on a stopped replay would start a new one).
FLUSH_REPLAY = """async () => {
  const replay = Sentry.getReplay();
  if (replay && replay.getReplayId()) { await replay.flush(); }
  await Sentry.flush(5000);
  return replay ? replay.getReplayId() || null : null;
}"""
