"""Real bundlers from npm (esbuild, Rollup + terser, webpack, sentry-cli) and a small shop app.

The packages install once into a cache directory (RETROSPEC_TEST_NPM_DIR, else
~/.cache/retrospec-tests/npm-<digest of the package list>), so a second run needs no network.
Without node or npm the tests that need them skip, except on CI (CI=true) where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

PACKAGES = (
    "esbuild@0.25.12",
    "rollup@4.68.8",
    "@rollup/plugin-terser@0.4.4",
    "webpack@5.113.0",
    "@sentry/cli@2.58.6",
)


def npm_dir() -> Path:
    """Where the bundlers are installed (installing them on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the bundler tests (CI=true: no skipping)")
        pytest.skip("node/npm are not installed; the bundler tests need them")
    digest = hashlib.sha256("\n".join(PACKAGES).encode()).hexdigest()[:12]
    root = Path(
        os.environ.get("RETROSPEC_TEST_NPM_DIR")
        or Path.home() / ".cache" / "retrospec-tests" / f"npm-{digest}"
    )
    marker = root / ".installed"
    if not marker.exists():
        root.mkdir(parents=True, exist_ok=True)
        (root / "package.json").write_text('{"private": true}')
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
            cwd=root,
            check=True,
            timeout=600,
        )
        marker.write_text("\n".join(PACKAGES))
    return root


def _bin(name: str) -> str:
    return str(npm_dir() / "node_modules" / ".bin" / name)


# The app: three modules, each bug in its own function. `version` changes the code between
# releases so columns and bundle hashes move, like a real deploy.
def app_sources(version: int) -> dict[str, str]:
    """Source files of the shop app for one release."""
    padding = "\n".join(f"export const RELEASE_NOTE_{i} = 'v{version}';" for i in range(version))
    return {
        "src/main.js": textwrap.dedent(
            f"""\
            import {{ applyCoupon }} from "./coupons.js";
            import {{ Cart }} from "./cart.js";
            import {{ refresh }} from "./api.js";
            {padding}
            const cart = new Cart();
            function on(id, fn) {{
              document.getElementById(id).addEventListener("click", fn);
            }}
            on("coupon", () => applyCoupon(document.getElementById("code").value));
            on("total", () => cart.total());
            on("profile", () => refresh("profile"));
            on("settings", () => refresh("settings"));
            window.shopReady = "v{version}";
            """
        ),
        "src/coupons.js": textwrap.dedent(
            """\
            const KNOWN = ["WELCOME", "SPRING"];
            export function applyCoupon(code) {
              if (!KNOWN.includes(code)) {
                throw new Error("Coupon " + code + " is invalid");
              }
              return code;
            }
            """
        ),
        "src/cart.js": textwrap.dedent(
            """\
            export class Cart {
              constructor() {
                this.items = [{ price: { amount: 3 } }, { name: "gift" }];
              }
              total() {
                let sum = 0;
                for (const item of this.items) {
                  sum += item.price.amount;
                }
                return sum;
              }
            }
            """
        ),
        "src/api.js": textwrap.dedent(
            """\
            function loadProfile(cache) {
              if (!cache.profile) throw new Error("Request failed");
              return cache.profile;
            }
            function loadSettings(cache) {
              if (!cache.settings) throw new Error("Request failed");
              return cache.settings;
            }
            export function refresh(what) {
              const cache = {};
              return what === "profile" ? loadProfile(cache) : loadSettings(cache);
            }
            """
        ),
    }


def write_app(root: Path, version: int) -> Path:
    """Write the app's sources under root; returns root."""
    for rel, text in app_sources(version).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "NODE_PATH": str(npm_dir() / "node_modules")}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}")


def build_esbuild(src: Path, out: Path) -> Path:
    """esbuild --bundle --minify --sourcemap, hashed names like a production build."""
    _run(
        [
            _bin("esbuild"),
            "src/main.js",
            "--bundle",
            "--minify",
            "--sourcemap",
            "--format=iife",
            "--entry-names=[name]-[hash]",
            f"--outdir={out}",
        ],
        src,
    )
    return out


def build_rollup(src: Path, out: Path) -> Path:
    """Rollup + terser, `name-[hash].js` with native debug IDs in the bundle and its map."""
    config = src / "rollup.config.mjs"
    config.write_text(
        textwrap.dedent(
            f"""\
            import terser from "@rollup/plugin-terser";
            export default {{
              input: "src/main.js",
              output: {{
                dir: {json.dumps(str(out))},
                format: "iife",
                entryFileNames: "[name]-[hash].js",
                sourcemap: true,
                sourcemapDebugIds: true,
                plugins: [terser()],
              }},
            }};
            """
        )
    )
    (src / "node_modules").unlink(missing_ok=True)
    (src / "node_modules").symlink_to(npm_dir() / "node_modules")
    _run([_bin("rollup"), "-c", str(config), "--silent"], src)
    return out


def build_webpack(src: Path, out: Path) -> Path:
    """webpack production (terser) with `[name].[contenthash].js` and a source map."""
    script = src / "build-webpack.cjs"
    script.write_text(
        textwrap.dedent(
            f"""\
            const webpack = require("webpack");
            webpack({{
              mode: "production",
              context: {json.dumps(str(src))},
              entry: "./src/main.js",
              devtool: "source-map",
              output: {{ path: {json.dumps(str(out))}, filename: "[name].[contenthash].js" }},
            }}, (err, stats) => {{
              if (err || stats.hasErrors()) {{
                console.error(err || stats.toString());
                process.exit(1);
              }}
            }});
            """
        )
    )
    _run(["node", str(script)], src)
    return out


def sentry_inject(out: Path) -> None:
    """`sentry-cli sourcemaps inject`: debug IDs in bundle and map plus the runtime snippet."""
    _run([_bin("sentry-cli"), "sourcemaps", "inject", str(out)], out)


def bundle_of(out: Path) -> Path:
    """The one .js bundle a build wrote."""
    (found,) = [p for p in out.iterdir() if p.suffix == ".js"]
    return found


def sentry_cli_upload(out: Path, url: str, token: str, *args: str) -> str:
    """`sentry-cli sourcemaps upload` of a build to a RetroSpec server; returns its output."""
    env = {**os.environ, "SENTRY_DISABLE_UPDATE_CHECK": "true", "SENTRY_LOG_LEVEL": "info"}
    cmd = [_bin("sentry-cli"), "--url", url, "--auth-token", token, "sourcemaps", "upload"]
    result = subprocess.run(
        [*cmd, "--org", "o", "--project", "p", *args, str(out)],
        cwd=out,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"sentry-cli failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr
