"""/issues/{id}/clip.mp4 and clip.png: behind login, the right types, byte ranges, 404s; the
issue page shows the video, or why there is none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from retrospec.app import create_app
from retrospec.settings import Settings
from retrospec.storage.blobs import BlobStore, clip_key
from retrospec.video.store import Clip, save_clip
from tests.support.accounts import add_user, login, write
from tests.support.data import make_settings
from tests.support.replays import make_env, sid
from tests.support.rrweb import move, page_load

T0 = 1_732_560_000_000
VIDEO = bytes(range(256)) * 40  # stands in for an MP4: the route serves stored bytes as they are
POSTER = b"\x89PNG\r\n\x1a\n" + b"p" * 100


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def issue(settings: Settings) -> int:
    """An issue (cluster) whose clip row and files are stored."""
    env = make_env(Path(settings.data_dir))
    s = sid(1)
    env.send(
        s,
        0,
        [*page_load(T0), move(T0 + 500)],
        failures=[{"kind": "error", "type": "TypeError", "message": "x is undefined", "ts": T0}],
    )
    env.conn.execute(
        "INSERT INTO clusters (site_id, fingerprint, kind, basis, title, status, first_seen_at, "
        "last_seen_at, promoted_at, updated_at) VALUES (?, 'f', 'error', 'message', "
        "'TypeError: x is undefined', 'open', ?, ?, ?, ?)",
        (env.site.id, T0, T0, T0, T0),
    )
    env.conn.commit()
    blobs = BlobStore(settings.effective_blob_url)
    video_key = clip_key(env.site.id, s, 1, "mp4")
    poster_key = clip_key(env.site.id, s, 1, "png")
    blobs.put_raw(video_key, VIDEO)
    blobs.put_raw(poster_key, POSTER)
    clip = Clip(1, s, 1, "ready", None, video_key, poster_key, len(VIDEO), len(POSTER), 6100, T0)
    write(settings, lambda c: save_clip(c, clip))
    env.conn.close()
    return 1


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[object]]:
    with TestClient(create_app(settings, start_jobs=False)) as c:
        yield c


def test_clip_needs_a_login(client: TestClient[object], issue: int) -> None:
    res = client.get(f"/issues/{issue}/clip.mp4", follow_redirects=False)
    assert res.status_code in (302, 303, 401) and VIDEO[:50] not in res.content


def test_clip_whole_ranges_and_poster(
    client: TestClient[object], settings: Settings, issue: int
) -> None:
    add_user(settings)
    login(client)
    whole = client.get(f"/issues/{issue}/clip.mp4")
    assert whole.status_code == 200 and whole.content == VIDEO
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/issues/{issue}/clip.mp4", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == VIDEO[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(VIDEO)}"
    tail = client.get(f"/issues/{issue}/clip.mp4", headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == VIDEO[-5:]
    open_end = client.get(f"/issues/{issue}/clip.mp4", headers={"Range": "bytes=10200-"})
    assert open_end.status_code == 206 and open_end.content == VIDEO[10200:]
    beyond = client.get(f"/issues/{issue}/clip.mp4", headers={"Range": "bytes=999999-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(VIDEO)}"
    odd = client.get(f"/issues/{issue}/clip.mp4", headers={"Range": "lines=1-2"})
    assert odd.status_code == 200 and odd.content == VIDEO  # not a byte range: the whole file
    again = client.get(
        f"/issues/{issue}/clip.mp4", headers={"If-None-Match": whole.headers["etag"]}
    )
    assert again.status_code == 304
    poster = client.get(f"/issues/{issue}/clip.png")
    assert poster.status_code == 200 and poster.content == POSTER
    assert poster.headers["content-type"] == "image/png"
    page = client.get(f"/issues/{issue}")
    assert f'src="/issues/{issue}/clip.mp4"' in page.text
    assert f'poster="/issues/{issue}/clip.png"' in page.text


def test_no_clip_is_a_404_and_a_failed_clip_shows_its_reason(
    client: TestClient[object], settings: Settings, issue: int
) -> None:
    add_user(settings)
    login(client)
    assert client.get("/issues/999/clip.mp4").status_code == 404
    write(
        settings,
        lambda c: c.execute(
            "UPDATE issue_clips SET status = 'failed', reason = 'the render took too long', "
            "video_key = NULL, poster_key = NULL"
        ),
    )
    res = client.get(f"/issues/{issue}/clip.mp4")
    assert res.status_code == 404 and "this issue has no clip" in res.text
    page = client.get(f"/issues/{issue}")
    assert "No clip could be rendered: the render took too long" in page.text
    assert "<video" not in page.text
