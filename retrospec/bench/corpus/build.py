"""Install the corpus's npm packages (cached) and build every app with bundlers, in two deploys."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrospec.bench.corpus.model import App, Workspace, data_dir
from retrospec.bench.corpus.prepare import prepare

BUNDLERS = ("esbuild", "rollup", "vite", "webpack", "parcel")
NPM_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 300

# Where each deploy's bundles are served from. Deploy 2 moves to a per-release directory where
# that bundler's users typically have one (Next.js keeps webpack chunks under /_next/static/).
PUBLIC_PATHS: dict[str, tuple[str, str]] = {
    "esbuild": ("/assets/", "/assets/v2/"),
    "rollup": ("/assets/", "/static/2.0.0/"),
    "vite": ("/assets/", "/assets/"),
    "webpack": ("/static/js/", "/_next/static/"),
    "parcel": ("/", "/r/2025.06.2/"),
}


class BuildError(RuntimeError):
    """npm or a bundler failed."""


@dataclass(frozen=True, slots=True)
class Built:
    """One deployed site."""

    app: str
    bundler: str
    deploy: int
    root: Path
    info: dict[str, object]


def cache_root() -> Path:
    """Where installed packages and builds are kept between runs (`RETROSPEC_CORPUS_CACHE`)."""
    configured = os.environ.get("RETROSPEC_CORPUS_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "retrospec-corpus"


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.relative_to(data_dir()).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def install(log: Callable[[str], None]) -> Path:
    """Install the lockfile's packages once into the cache; returns the dir with node_modules/."""
    data = data_dir()
    lock = data / "package-lock.json"
    root = cache_root() / f"npm-{_digest([data / 'package.json', lock])}"
    tools = root / "tools"
    if not (root / ".installed").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise BuildError(
                "the grouping corpus needs Node.js and npm (apt-get install nodejs npm)"
            )
        root.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(data / name, root / name)
        log(f"npm install into {root} (once per lockfile)")
        # `npm install` with the lockfile, not `npm ci`: npm 11's ci refuses lockfiles that leave
        # out another platform's optional packages (vite's Windows-only helper).
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise BuildError(f"npm install failed:\n{proc.stderr[-3000:]}")
        (root / ".installed").write_text("ok\n", encoding="utf-8")
    # The build script resolves the bundlers from its own directory: it lives beside them.
    tools.mkdir(exist_ok=True)
    for name in ("bundle.mjs", ".parcelrc"):
        shutil.copyfile(data / "tools" / name, tools / name)
    return root


def build_one(app: App, bundler: str, deploy: int, src: Path, ws: Workspace) -> Built:
    """Bundle one prepared source tree with one bundler into its deployed site."""
    out = ws.dist(app.name, bundler, deploy)
    public = PUBLIC_PATHS[bundler][deploy - 1]
    started = time.monotonic()
    proc = subprocess.run(
        ["node", str(ws.root / "tools/bundle.mjs"), bundler, str(src), str(out), public],
        capture_output=True,
        text=True,
        cwd=ws.root,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"{bundler} failed on {app.name} d{deploy}:\n{proc.stderr[-4000:]}")
    info: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    info["wall_ms"] = round((time.monotonic() - started) * 1000)
    info.update(app=app.name, deploy=deploy, public_path=public)
    (out / "corpus-build.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return Built(app.name, bundler, deploy, out, info)


def _sources_digest(app: App, deploy: int, bundler: str, ws: Workspace) -> str:
    """What a build depends on: the prepared sources, the bundler and the build script."""
    src = ws.src(app.name, deploy)
    h = hashlib.sha256(f"{bundler}\n{deploy}\n{ws.root.name}\n".encode())
    h.update((data_dir() / "tools" / "bundle.mjs").read_bytes())
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        h.update(path.relative_to(src).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:20]


def build_all(
    apps: tuple[App, ...],
    bundlers: tuple[str, ...],
    ws: Workspace,
    log: Callable[[str], None],
) -> list[Built]:
    """Prepare each app's two deploys and bundle them; an unchanged build is reused."""
    built: list[Built] = []
    for app in apps:
        for deploy in (1, 2):
            src = prepare(app, deploy, ws.src(app.name, deploy), ws)
            for bundler in bundlers:
                out = ws.dist(app.name, bundler, deploy)
                stamp = out / "corpus-build.json"
                digest = _sources_digest(app, deploy, bundler, ws)
                if stamp.exists():
                    info = json.loads(stamp.read_text(encoding="utf-8"))
                    if info.get("digest") == digest:
                        built.append(Built(app.name, bundler, deploy, out, info))
                        continue
                b = build_one(app, bundler, deploy, src, ws)
                b.info["digest"] = digest
                stamp.write_text(json.dumps(b.info, indent=1) + "\n", encoding="utf-8")
                log(f"built {app.name} with {bundler}, deploy {deploy}: {b.info['wall_ms']} ms")
                built.append(b)
    return built
