"""The built wheel carries templates/assets/example and runs `retrospec serve` from an empty dir."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.paths import REPO
from tests.support.servers import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("retrospec-*.whl")
    return built


def test_wheel_contains_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "retrospec/_data/templates",
        "retrospec/_data/assets/vendor/htmx-2.0.11.min.js",
        "retrospec/_data/assets/vendor/htmx-2.0.11.LICENSE.txt",
        "retrospec/_data/assets/vendor/rrweb-record-2.1.6.umd.min.js",
        "retrospec/_data/assets/vendor/rrweb-player-2.1.6.umd.min.js",
        "retrospec/_data/assets/vendor/rrweb-2.1.6.LICENSE.txt",
        "retrospec/_data/retrospec.toml.example",
        "retrospec/cli/main.py",
    ):
        assert any(n == required or n.startswith(required + "/") for n in names), required
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_wheel_installs_and_serves_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # Dependencies come from this test environment (no network); the package itself only from
    # the wheel: a .pth appends our site-packages *after* the fresh venv's own.
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "zz_test_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    where = subprocess.run(
        [str(py), "-c", "import retrospec.paths as p; print(p.resource_root())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert where.startswith(purelib), where  # resources found inside the installed wheel

    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    proc = subprocess.Popen(
        [str(venv / "bin" / "retrospec"), "serve", "--port", str(port)],
        cwd=empty,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        health = None
        for _ in range(200):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.1)
        assert health is not None and health.status_code == 200
        assert health.json()["status"] == "ok"
        htmx = httpx.get(f"http://127.0.0.1:{port}/assets/vendor/htmx-2.0.11.min.js")
        assert htmx.status_code == 200
        assert htmx.content == (REPO / "assets/vendor/htmx-2.0.11.min.js").read_bytes()
        assert htmx.headers["content-type"].startswith("text/javascript")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
    assert (empty / "retrospec-data" / "retrospec.sqlite3").is_file()
    assert (empty / "retrospec-data" / "secret").is_file()
