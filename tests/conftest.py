"""Shared fixtures: fresh data dirs, in-process apps, real `retrospec serve` processes, chromium.

The builders behind them live in tests/support/; this file holds fixtures only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from retrospec.bench.pgcluster import pg_bindir
from retrospec.chromium import CHROMIUM_ARGS, chromium_path
from retrospec.settings import Settings
from retrospec.storage.blobs import set_store_options
from retrospec.storage.migrations import prepare_database
from tests.support.data import make_settings
from tests.support.disks import can_mount, small_disk
from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.sentry_sdk import SdkUnavailable, sentry_bundle
from tests.support.servers import (
    RequestLog,
    ServerProcess,
    StaticSite,
    free_port,
    logging_site,
    serve_static,
    server_env,
)
from tests.support.services import TEMPLATE_DB, PgCluster, S3Server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `backends` run on SQLite + local blobs and on PostgreSQL + S3 (slow)."""
    if metafunc.definition.get_closest_marker("backends") and (
        "settings" in metafunc.fixturenames or "backend" in metafunc.fixturenames
    ):
        metafunc.parametrize(
            "backend", ["sqlite", pytest.param("pg+s3", marks=pytest.mark.slow)], scope="function"
        )


@pytest.fixture
def backend() -> str:
    """The storage backend of a test not marked `backends`: SQLite + a local blob dir."""
    return "sqlite"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL server with a migrated template database."""
    bindir = pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (CI=true: PostgreSQL tests must not skip)")
        pytest.skip("PostgreSQL is not installed; `apt-get install postgresql` to run these")
    cluster = PgCluster(bindir)
    cluster.start()
    try:
        cluster.admin(f"CREATE DATABASE {TEMPLATE_DB}")
        prepare_database(cluster.url(TEMPLATE_DB))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server on loopback, with one bucket (retrospec-test)."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backend_settings(request: pytest.FixtureRequest, backend: str) -> Callable[..., Settings]:
    """Factory: settings for this test's backend, rooted at a data dir (database migrated)."""

    def make(data_dir: Path, **overrides: Any) -> Settings:
        if backend == "pg+s3":
            pg: PgCluster = request.getfixturevalue("pg_cluster")
            s3: S3Server = request.getfixturevalue("s3_server")
            overrides = {
                "database_url": pg.new_database(),
                "blob_url": s3.new_prefix(),
                **s3.settings_env(),
                **overrides,
            }
        s = make_settings(data_dir, **overrides)
        set_store_options(s.blob_options)
        prepare_database(s.database)
        return s

    return make


@pytest.fixture
def settings(tmp_path: Path, backend_settings: Callable[..., Settings]) -> Settings:
    """Settings rooted in this test's tmp_path, with the database migrated (see `backends`)."""
    return backend_settings(tmp_path / "data")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: serve(**settings) starts a real server with those settings as RETROSPEC_* env."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **settings_env: Any) -> ServerProcess:
        ddir = data_dir or tmp_path / f"data{len(started)}"
        ddir.mkdir(parents=True, exist_ok=True)
        env = server_env(ddir, **{k: str(v) for k, v in settings_env.items()})
        server = ServerProcess(data_dir=ddir, port=free_port(), env=env, log_dir=tmp_path)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Factory: tmpfs(size_mb) mounts a small real filesystem for this test.

    Unmounted lazily at teardown, so a server still running on it is no problem. Skips (with the
    reason) where mounting is not permitted; the settings-based floor tests still run there.
    """
    reason = can_mount()
    if reason is not None:
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        count = [0]

        def mount(size_mb: int) -> Path:
            count[0] += 1
            try:
                return stack.enter_context(small_disk(tmp_path / f"disk{count[0]}", size_mb))
            except PermissionError as exc:
                pytest.skip(str(exc))

        yield mount


# --- browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of chromium; on CI a missing browser fails the test instead of skipping it."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI=true: browser tests must not be skipped)")
        pytest.skip("chromium is not installed; `apt-get install chromium` to run browser tests")
    return path


@pytest.fixture(scope="session")
def ffmpeg_executable() -> str:
    """ffmpeg from imageio-ffmpeg (the video extra); on CI a missing one fails the test."""
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]

        path = str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        if os.environ.get("CI"):
            pytest.fail("imageio-ffmpeg is not installed (CI=true: video tests must not skip)")
        pytest.skip("imageio-ffmpeg is not installed; pip install -e '.[test]'")
    return path


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Any]:
    """Headless Debian chromium driven by playwright, one per test module.

    Module scope on purpose: playwright's sync API keeps its event loop marked as running in the
    main thread while it is open, which would break asyncio.run() in later, unrelated tests.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture
def request_log(tmp_path: Path) -> Iterator[RequestLog]:
    """A server on another loopback port that answers everything and records every request."""
    with logging_site(tmp_path / "remote") as log:
        yield log


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[StaticSite]:
    """Serve tmp_path/site on http://localhost:<port> (a different origin from 127.0.0.1)."""
    root = tmp_path / "site"
    root.mkdir()
    with serve_static(root) as site:
        yield site


# --- alert receivers -----------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A real SMTP server (aiosmtpd) on loopback, keeping every message it accepts."""
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    """A real HTTP webhook receiver on loopback, keeping every request it accepts."""
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def sentry_sdk() -> Path:
    """The real @sentry/browser bundle; on CI a missing npm fails the test instead of skipping."""
    try:
        return sentry_bundle()
    except SdkUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the Sentry SDK bundle is unavailable (CI=true): {exc}")
        pytest.skip(f"the Sentry SDK bundle is unavailable: {exc}")
