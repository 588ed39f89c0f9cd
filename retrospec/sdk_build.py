"""Developer tool: minify the SDK source into assets/sdk/dist/ (`python -m retrospec.sdk_build`).

The minified core is committed, so installing or serving RetroSpec never needs Node. Its header
records a digest of the sources; `retrospec.sdk` serves it only while that digest matches, and a
test fails when it is stale.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from retrospec.paths import assets_dir

SDK_PARTS = ("util.js", "transport.js", "capture.js", "main.js")
DIST_NAME = "dist/retrospec-core.min.js"
ESBUILD = "esbuild@0.28.2"
_HEADER = (
    "/* RetroSpec SDK core, minified from assets/sdk/*.js by retrospec.sdk_build; sources {} */\n"
)


def core_source(root: Path | None = None) -> str:
    """The SDK parts in one factory function: RetrospecCore(RRWEB, SDK_VERSION) -> initRetrospec."""
    sdk_dir = (root or assets_dir()) / "sdk"
    parts = "\n".join((sdk_dir / name).read_text(encoding="utf-8") for name in SDK_PARTS)
    return (
        "var RetrospecCore = function (RRWEB, SDK_VERSION) {\n'use strict';\n"
        f"{parts}\nreturn initRetrospec;\n}};\n"
    )


def sources_digest(root: Path | None = None) -> str:
    """Digest of the SDK sources, recorded in the minified file's header."""
    return hashlib.sha256(core_source(root).encode("utf-8")).hexdigest()[:16]


def header(digest: str) -> str:
    """First line of the minified file."""
    return _HEADER.format(digest)


def main() -> None:
    """Minify with esbuild (through npx) and write assets/sdk/dist/retrospec-core.min.js."""
    npx = shutil.which("npx")
    if npx is None:
        sys.exit("npx (Node.js) is needed to rebuild the SDK")
    result = subprocess.run(
        [npx, "--yes", ESBUILD, "--minify", "--target=es2018", "--legal-comments=none"],
        input=core_source(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(result.stderr)
    out = assets_dir() / "sdk" / DIST_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header(sources_digest()) + result.stdout, encoding="utf-8")
    print(f"wrote {out} ({len(result.stdout)} bytes)")


if __name__ == "__main__":
    main()
