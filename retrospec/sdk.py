"""The browser SDK bundles: the vendored rrweb recorder plus our SDK core, assembled at startup.

The core is assets/sdk/dist/retrospec-core.min.js, minified from the readable sources in
assets/sdk/*.js by `python -m retrospec.sdk_build` and committed, so serving never needs Node.
While the minified file is stale (sources edited, not rebuilt) the sources are served as they
are, minus comments and indentation, and tests/test_sdk.py fails until it is rebuilt.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from retrospec import __version__
from retrospec.paths import assets_dir
from retrospec.sdk_build import DIST_NAME, SDK_PARTS, header, sources_digest

RRWEB_FILE = "vendor/rrweb-record-2.1.6.umd.min.js"
RRWEB_LICENSE_FILE = "vendor/rrweb-2.1.6.LICENSE.txt"
CONTENT_TYPE = "text/javascript"  # Litestar appends "; charset=utf-8" to text/* types
GZIP_BUDGET = 32 * 1024  # the classic bundle, recorder included, must stay under this gzipped

_COMMENT_LINE = re.compile(r"^\s*//.*$")


@dataclass(frozen=True, slots=True)
class Bundle:
    """One served SDK file: its bytes, pre-gzipped bytes and content digest."""

    body: bytes
    gzipped: bytes
    digest: str


@dataclass(frozen=True, slots=True)
class Bundles:
    """The classic script (global `Retrospec`) and the ES module (`export { initRetrospec }`)."""

    script: Bundle
    module: Bundle


def compact(source: str) -> str:
    """Drop full-line comments, indentation and blank lines; every other byte stays as written."""
    code = [line.strip() for line in source.splitlines() if not _COMMENT_LINE.match(line)]
    if any("`" in line for line in code):
        # Template literals may span lines, where removing indentation would change strings.
        raise ValueError("the SDK source must not use template literals (see retrospec/sdk.py)")
    return "\n".join(line for line in code if line) + "\n"


def _banner(root: Path) -> str:
    licence = (root / RRWEB_LICENSE_FILE).read_text(encoding="utf-8")
    mit = licence[licence.index("MIT License") :].strip().replace("*/", "* /")
    return (
        f"/*! RetroSpec browser SDK {__version__} (MIT). Bundles @rrweb/record 2.1.6:\n{mit}\n*/\n"
    )


def _recorder(root: Path, holder: str) -> str:
    # rrweb's UMD header looks for define/module/exports first; hiding them makes it set
    # holder.rrwebRecord whatever module system the host page has.
    umd = (root / RRWEB_FILE).read_text(encoding="utf-8")
    return f"(function (define, module, exports) {{\n{umd}\n}}).call({holder});\n"


def _bundle(text: str) -> Bundle:
    body = text.encode("utf-8")
    return Bundle(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        digest=hashlib.sha256(body).hexdigest()[:12],
    )


def core(root: Path) -> str:
    """The SDK core factory `RetrospecCore(RRWEB, SDK_VERSION)`: minified when fresh."""
    dist = root / "sdk" / DIST_NAME
    if dist.is_file():
        text = dist.read_text(encoding="utf-8")
        first, _, rest = text.partition("\n")
        if first + "\n" == header(sources_digest(root)):
            return rest
    sdk = "".join(compact((root / "sdk" / name).read_text(encoding="utf-8")) for name in SDK_PARTS)
    return (
        f"var RetrospecCore = function (RRWEB, SDK_VERSION) {{\n'use strict';\n{sdk}"
        "return initRetrospec;\n};\n"
    )


def build(root: Path | None = None) -> Bundles:
    """Assemble both bundles from the files under assets/."""
    root = root or assets_dir()
    version = json.dumps(__version__)
    body = (
        f"var rrwebHolder = {{}};\n{_recorder(root, 'rrwebHolder')}{core(root)}"
        f"var initRetrospec = RetrospecCore(rrwebHolder.rrwebRecord || null, {version});\n"
    )
    script = (
        f"{_banner(root)}(function () {{\n{body}"
        f"window.Retrospec = {{ initRetrospec: initRetrospec, version: {version} }};\n}})();\n"
    )
    module = f"{_banner(root)}{body}export {{ initRetrospec }};\n"
    return Bundles(script=_bundle(script), module=_bundle(module))


@cache
def bundles() -> Bundles:
    """The bundles of this installation, built once per process."""
    return build()


def _options(base: str, key: str, site: str | None) -> str:
    options = {"apiBaseUrl": base, "apiKey": key, **({"site": site} if site else {})}
    # "<" escaped so a value can never close the surrounding <script> element.
    return json.dumps(options).replace("<", "\\u003c")


def script_snippet(base_url: str, key: str, site: str | None = None) -> str:
    """HTML that embeds the SDK as a classic script, for the docs, dashboard and CLI."""
    base = base_url.rstrip("/")
    options = _options(base, key, site)
    return (
        f'<script src="{base}/sdk/retrospec.js" crossorigin="anonymous"></script>\n'
        f"<script>\n  Retrospec.initRetrospec({options});\n</script>"
    )


def module_snippet(base_url: str, key: str, site: str | None = None) -> str:
    """HTML that embeds the SDK as an ES module."""
    base = base_url.rstrip("/")
    options = _options(base, key, site)
    return (
        '<script type="module">\n'
        f'  import {{ initRetrospec }} from "{base}/sdk/retrospec.mjs";\n'
        f"  initRetrospec({options});\n</script>"
    )
