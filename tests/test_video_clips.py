"""The clips job: a newly promoted issue gets its clip without manual steps, the issue page plays
it in chromium, `issues show` and the report link it, and purge removes it with the replay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrospec.issues import clustering
from retrospec.video import clips
from retrospec.video.store import get_clip
from tests.support.accounts import PASSWORD, add_user
from tests.support.browser import query, wait_for
from tests.support.data import add_site
from tests.support.replays import make_env, sid
from tests.support.servers import ServerProcess, free_port, logging_site, serve_static, server_env
from tests.support.video import checkout_pages, cli, record_checkout


@pytest.fixture
def server(tmp_path: Path, chromium_executable: str) -> Iterator[ServerProcess]:
    """A server running its jobs often: replays, clustering and clips happen by themselves."""
    data = tmp_path / "data"
    data.mkdir()
    env = server_env(
        data, replay_interval_seconds="1", cluster_interval_seconds="1", clip_interval_seconds="2"
    )
    proc = ServerProcess(data_dir=data, port=free_port(), env=env)
    proc.start()
    yield proc
    proc.stop()


def run_job(server: ServerProcess, name: str) -> dict[str, Any]:
    res = cli(server, "jobs", "run", name, "--json")
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.mark.browser
@pytest.mark.slow
def test_promoted_issue_gets_a_clip_the_issue_page_plays(
    server: ServerProcess, tmp_path: Path, browser: Any, ffmpeg_executable: str
) -> None:
    _site, key = add_site(server.settings, "shop")
    (tmp_path / "site").mkdir()
    (tmp_path / "remote").mkdir()
    with serve_static(tmp_path / "site") as static, logging_site(tmp_path / "remote") as remote:
        a, _b = checkout_pages(static, server, key, remote.origin)
        for secret in ("first", "second"):  # two sessions: the issue is promoted
            context = browser.new_context(viewport={"width": 1280, "height": 720})
            try:
                record_checkout(context, a, secret)
            finally:
                context.close()
    db = server.settings.db_path
    # No manual step: the server's scheduler builds the replays, promotes the issue (two
    # sessions) and renders its clip.
    rows = wait_for(
        lambda: query(db, "SELECT cluster_id, status, reason FROM issue_clips"),
        timeout=180,
        what="the clips job",
    )
    assert [(r["status"], r["reason"]) for r in rows] == [("ready", None)]
    issue_id = int(rows[0]["cluster_id"])
    [issue] = query(db, "SELECT status FROM clusters WHERE id = ?", issue_id)
    assert issue["status"] == "open"
    again = run_job(server, "clips")  # rendered once: nothing left to do
    assert again["status"] == "ok" and again["items"] == 0

    shown = json.loads(cli(server, "issues", "show", str(issue_id), "--json").stdout)
    clip = shown["clip"]
    assert clip["status"] == "ready" and clip["reason"] is None
    assert clip["url"] == f"{server.base_url}/issues/{issue_id}/clip.mp4"
    assert clip["poster_url"] == f"{server.base_url}/issues/{issue_id}/clip.png"
    assert 2_000 <= clip["duration_ms"] <= 23_500 and clip["bytes"] > 1000
    text = cli(server, "issues", "show", str(issue_id)).stdout
    assert f"/issues/{issue_id}/clip.mp4" in text
    markdown = cli(server, "issues", "show", str(issue_id), "--markdown").stdout
    assert f"]({server.base_url}/issues/{issue_id}/clip.mp4) (MP4" in markdown

    # Behind login: no clip for a stranger.
    anonymous = httpx.get(clip["url"], follow_redirects=False)
    assert anonymous.status_code in (302, 303, 401)

    add_user(server.settings, "alice")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.base_url}/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto(f"{server.base_url}/issues/{issue_id}")
        # Functions, not expressions: the dashboard's CSP forbids eval().
        page.wait_for_function(
            "() => { const v = document.getElementById('issue-clip'); "
            "return v && v.readyState >= 1; }",
            timeout=20_000,
        )
        duration = page.evaluate("document.getElementById('issue-clip').duration")
        assert abs(duration - clip["duration_ms"] / 1000) <= 0.5
        page.evaluate("document.getElementById('issue-clip').muted = true")
        page.evaluate("document.getElementById('issue-clip').play()")
        page.wait_for_function(
            "() => document.getElementById('issue-clip').currentTime > 0.3", timeout=20_000
        )
        poster = context.request.get(clip["poster_url"])
        assert poster.status == 200 and poster.headers["content-type"] == "image/png"
        assert poster.body()[:8] == b"\x89PNG\r\n\x1a\n"
        part = context.request.get(clip["url"], headers={"Range": "bytes=100-199"})
        assert part.status == 206 and len(part.body()) == 100
        assert part.headers["content-range"] == f"bytes 100-199/{clip['bytes']}"
        assert part.headers["content-type"] == "video/mp4"
    finally:
        context.close()

    # Purge: the clip goes with the replay, the row says so.
    blobs_dir = Path(server.settings.effective_blob_url)
    assert len(list((blobs_dir / "clips").rglob("*.mp4"))) == 1
    time.sleep(1.2)
    purged = cli(server, "purge", "--older-than", "1s", "--orphan-grace", "1h", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["removed"]["clips"] == 1
    assert list((blobs_dir / "clips").rglob("*.*")) == []
    after = json.loads(cli(server, "issues", "show", str(issue_id), "--json").stdout)
    assert after["clip"]["status"] == "expired" and after["clip"]["url"] is None


def test_an_issue_whose_session_recorded_no_replay_fails_with_the_reason(
    tmp_path: Path, chromium_executable: str, ffmpeg_executable: str
) -> None:
    env = make_env(tmp_path / "data", promote_after=1)
    try:
        failure = {"kind": "error", "type": "TypeError", "message": "x is undefined", "ts": 1}
        env.send(sid(1), 0, failures=[{**failure, "ts": 1_732_560_000_000}])
        clustering.run(env.ctx())
        [(issue_id,)] = env.conn.execute("SELECT id FROM clusters WHERE status = 'open'")
        # Seen long ago and no replay data ever came: it never will.
        result = clips.run(env.ctx())
        assert (result.items, result.details["outcomes"]) == (1, {"failed": 1})
        clip = get_clip(env.conn, issue_id)
        assert clip is not None and clip.status == "failed"
        assert clip.reason == "the session recorded no replay"
        assert clips.run(env.ctx()).items == 0  # tried once
        off = make_env(tmp_path / "off", clips=False)
        assert clips.run(off.ctx()).message == "clips are off (clips = false)"
        off.conn.close()
    finally:
        env.conn.close()
