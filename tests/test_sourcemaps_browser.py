"""Production JavaScript end to end: real bundles (esbuild, Rollup + terser, webpack) in two
releases, failures from our SDK in chromium, maps uploaded by the CLI and the CI endpoint, and
original functions, files and lines in `issues show --json` and on the issue page."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accounts import PASSWORD
from tests.support.browser import query, wait_for
from tests.support.bundlers import (
    build_esbuild,
    build_rollup,
    build_webpack,
    bundle_of,
    sentry_inject,
    write_app,
)
from tests.support.data import add_site
from tests.support.servers import ServerProcess, StaticSite, free_port, serve_static, server_env
from tests.support.shop import run_cli
from tests.support.sourcemaps import tar_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop {release}</title><link rel="icon" href="data:,">
<script src="{base}/sdk/retrospec.js"></script>
<script>window.rs = Retrospec.initRetrospec({config});</script>
</head><body>
<input id="code" value="{code}">
<button id="coupon">Apply coupon</button><button id="total">Total</button>
<button id="profile">Profile</button><button id="settings">Settings</button>
<script src="{script}"></script>
</body></html>"""


@dataclass
class World:
    server: ServerProcess
    site: StaticSite
    key: str
    pages: dict[str, str]  # "<bundler>/<release>" -> page URL


def _deploy(site: StaticSite, work: Path, bundler: str, version: int, build: Any) -> Path:
    """Build one release in the project's own dist/ (as CI does: same checkout, every release)
    and deploy it under /<bundler>/r<version>/ (a per-release directory)."""
    project = write_app(work / bundler, version)
    dist = project / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    build(project, dist)
    out = site.root / bundler / f"r{version}"
    shutil.copytree(dist, out)
    return out


@pytest.fixture(scope="module")
def world(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sourcemaps-browser")
    data = root / "data"
    data.mkdir()
    env = server_env(data, cluster_interval_seconds="0.5")
    created = subprocess.run(
        [sys.executable, "-m", "retrospec", "users", "add", "alice", "--password-stdin"],
        input=PASSWORD + "\n", env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    (root / "site").mkdir()
    with serve_static(root / "site") as site:
        server = ServerProcess(data_dir=data, port=free_port(), env=env)
        server.start()
        try:
            _, key = add_site(server.settings, "shop", [site.origin])
            pages: dict[str, str] = {}
            builds = {"esbuild": build_esbuild, "rollup": build_rollup, "webpack": build_webpack}
            for bundler, build in builds.items():
                for version in (1, 2):
                    out = _deploy(site, root / "work", bundler, version, build)
                    script = f"/{bundler}/r{version}/{bundle_of(out).name}"
                    pages[f"{bundler}/{version}"] = _page(site, server, key, script, version)
            # Debug IDs: webpack's output stamped by sentry-cli, served at a path no upload names.
            out = _deploy(site, root / "work", "debugid", 1, build_webpack)
            sentry_inject(out)
            script = f"/debugid/r1/{bundle_of(out).name}"
            pages["debugid/1"] = _page(site, server, key, script, 1)
            yield World(server, site, key, pages)
        finally:
            server.stop()


def _page(site: StaticSite, server: ServerProcess, key: str, script: str, version: int) -> str:
    config = {"apiBaseUrl": server.base_url, "apiKey": key, "release": f"{version}.0"}
    name = script.strip("/").replace("/", "-") + ".html"
    html = PAGE.format(
        release=version,
        base=server.base_url,
        config=json.dumps(config),
        script=script,
        code=f"CODE{version}",
    )
    return site.write(name, html)


def cli(world: World, *args: str) -> Any:
    done = run_cli(world.server.env, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def click_in_new_session(browser: Any, url: str, button: str) -> None:
    """One visit (its own session): load the page, click, wait until the SDK delivered it."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.shopReady !== undefined")
    page.click(f"#{button}")
    wait_for(lambda: errors, what="the page error")
    page.evaluate("window.rs.flush()")
    context.close()


def failures(world: World) -> int:
    return int(query(world.server.settings.db_path, "SELECT count(*) FROM failures")[0][0])


def issue_for(world: World, function: str, failures: int = 2) -> dict[str, Any]:
    """`issues show --json` of the issue whose top frame is this original function, once it
    has this many failures (waits for the cluster job)."""

    def find() -> int | None:
        rows = query(
            world.server.settings.db_path,
            "SELECT c.id, c.failure_count, f.frames FROM clusters c "
            "JOIN cluster_frames f ON f.cluster_id = c.id WHERE c.status != 'candidate'",
        )
        for cid, count, frames in rows:
            if json.loads(frames)[0]["function"] == function and count >= failures:
                return int(cid)
        return None

    found = wait_for(find, timeout=40, what=f"an issue in {function}")
    shown: dict[str, Any] = cli(world, "issues", "show", str(found), "--json")
    return shown


def test_esbuild_rollup_webpack_two_releases_symbolicated_and_grouped(
    browser: Any, world: World
) -> None:
    # Release 1 maps through the CLI, release 2 through the CI endpoint with the upload token.
    token = cli(world, "sites", "upload-token", "shop", "--json")["upload_token"]
    for bundler in ("esbuild", "rollup", "webpack"):
        r1 = world.site.root / bundler / "r1"
        cli(world, "sourcemaps", "upload", "shop", str(r1), "--release", "1.0",
            "--url-prefix", f"~/{bundler}/r1", "--json")  # fmt: skip
        body = tar_bytes(
            {p.name: p.read_bytes() for p in (world.site.root / bundler / "r2").iterdir()},
            gz=True,
        )
        res = httpx.post(
            f"{world.server.base_url}/api/v1/sourcemaps",
            params={"release": "2.0", "url_prefix": f"~/{bundler}/r2"},
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/gzip"},
        )
        assert res.status_code == 201, res.text
    for bundler in ("esbuild", "rollup", "webpack"):
        for version in (1, 2):
            for button in ("total", "profile", "settings"):
                click_in_new_session(browser, world.pages[f"{bundler}/{version}"], button)
    wait_for(lambda: failures(world) >= 18, what="18 failures stored")

    total = issue_for(world, "Cart.total", failures=6)
    top = total["frames"][0]
    assert (top["path"], top["line"], top["mapped"]) == ("src/cart.js", 8, True)
    assert "item.price.amount" in top["context_line"]
    # One bug, one issue: three bundlers x two releases (different files, hashes, columns).
    assert total["counts"]["failures"] == 6, total["counts"]
    assert total["releases"]["first"] == "1.0" and total["releases"]["last"] == "2.0"
    # Same message, same caller, different functions: two issues.
    profile = issue_for(world, "loadProfile", failures=6)
    settings_issue = issue_for(world, "loadSettings", failures=6)
    assert profile["id"] != settings_issue["id"]
    assert profile["frames"][0]["path"] == "src/api.js" and profile["frames"][0]["line"] == 2
    assert profile["frames"][1]["function"] == "refresh"
    releases = cli(world, "releases", "list", "--site", "shop", "--json")["releases"]
    assert {r["release"]: r["has_source_maps"] for r in releases} == {"1.0": True, "2.0": True}

    # The issue page: original function and file, the failing line highlighted.
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{world.server.base_url}/issues/{total['id']}")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".frame.mapped")
    first = page.locator(".frame.mapped").first
    assert first.locator(".fn").inner_text() == "Cart.total"
    assert "src/cart.js:8" in first.locator(".loc").inner_text()
    failing = first.locator(".ctx.failing")
    assert "item.price.amount" in failing.inner_text() and "8" in failing.inner_text()
    assert page.locator(".no-maps").count() == 0
    context.close()


def test_debug_ids_match_without_url_prefix_or_release(browser: Any, world: World) -> None:
    out = world.site.root / "debugid" / "r1"
    # Uploaded under another release and a prefix the page's URL does not have.
    cli(world, "sourcemaps", "upload", "shop", str(out), "--release", "ci-build-9",
        "--url-prefix", "~/somewhere/else", "--json")  # fmt: skip
    for _ in range(2):
        click_in_new_session(browser, world.pages["debugid/1"], "coupon")

    def coupon_rows() -> list[Any]:
        rows = query(
            world.server.settings.db_path,
            "SELECT payload FROM failures WHERE message LIKE 'Coupon CODE1%'",
        )
        return rows if len(rows) >= 2 else []

    rows = wait_for(coupon_rows, what="the coupon failures")
    payload = json.loads(rows[0][0])
    script = f"{world.site.origin}/debugid/r1/{bundle_of(out).name}"
    assert list(payload["debug_ids"]) == [script]  # reported by the SDK from _sentryDebugIds
    issue = issue_for(world, "applyCoupon")
    top = issue["frames"][0]
    assert (top["path"], top["line"]) == ("src/coupons.js", 4)
    assert top["raw_file"] == script
