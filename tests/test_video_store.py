"""The issue_clips table: which issues are due, saving once, and retention with the replay."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrospec import retention
from retrospec.storage.blobs import clip_key
from retrospec.storage.db import DirectWriter
from retrospec.video.store import Clip, clip_key_live, get_clip, issues_without_clip, save_clip
from tests.support.replays import T0, Env, make_env, sid
from tests.support.rrweb import move, page_load

DAY_MS = 86_400_000


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path / "data")
    yield e
    e.conn.close()


def cluster(env: Env, status: str, fingerprint: str) -> int:
    promoted = T0 if status != "candidate" else None
    cur = env.conn.execute(
        "INSERT INTO clusters (site_id, fingerprint, kind, basis, title, status, first_seen_at, "
        "last_seen_at, promoted_at, updated_at) VALUES (?, ?, 'error', 'message', 't', ?, ?, ?, "
        "?, ?)",
        (env.site.id, fingerprint, status, T0, T0, promoted, T0),
    )
    env.conn.commit()
    return int(cur.lastrowid or 0)


def stored_clip(env: Env, issue_id: int, session_id: str) -> Clip:
    video = clip_key(env.site.id, session_id, issue_id, "mp4")
    poster = clip_key(env.site.id, session_id, issue_id, "png")
    env.blobs.put_raw(video, b"v" * 1000)
    env.blobs.put_raw(poster, b"p" * 100)
    clip = Clip(issue_id, session_id, None, "ready", None, video, poster, 1000, 100, 5000, T0)
    DirectWriter(env.conn).call(lambda c: save_clip(c, clip))
    return clip


def test_due_issues_are_promoted_ones_without_a_clip(env: Env) -> None:
    open_id = cluster(env, "open", "a")
    cluster(env, "candidate", "b")
    resolved = cluster(env, "resolved", "c")
    assert set(issues_without_clip(env.conn, 10)) == {open_id, resolved}
    failed = Clip(open_id, sid(1), None, "failed", "no snapshot", None, None, 0, 0, None, T0)
    DirectWriter(env.conn).call(lambda c: save_clip(c, failed))
    DirectWriter(env.conn).call(lambda c: save_clip(c, failed))  # saved once, no error
    assert issues_without_clip(env.conn, 10) == [resolved]
    assert get_clip(env.conn, open_id) == failed
    assert get_clip(env.conn, resolved) is None


def test_purge_takes_the_clip_with_the_replay_and_the_sweep_keeps_live_clips(env: Env) -> None:
    s = sid(1)
    env.send(s, 0, [*page_load(T0), move(T0 + 500)])
    env.run()
    issue = cluster(env, "open", "a")
    clip = stored_clip(env, issue, s)
    orphan = clip_key(env.site.id, s, issue, "mp4")  # a render whose row was never written
    env.blobs.put_raw(orphan, b"o")
    old = T0 / 1000 - 7200
    for key in (str(clip.video_key), str(clip.poster_key), orphan):
        os.utime(env.blobs.path(key), (old, old))
    assert clip_key_live(env.conn, str(clip.video_key)) and not clip_key_live(env.conn, orphan)

    # Not expired yet: the sweep removes only the orphan.
    report = retention.purge(env.ctx(), now=T0 + 60_000)
    assert report.clips == 0 and report.orphans == 1
    assert env.blobs.exists(str(clip.video_key)) and not env.blobs.exists(orphan)

    report = retention.purge(env.ctx(), now=T0 + 30 * DAY_MS)
    assert report.replays == 1 and report.clips == 1
    after = get_clip(env.conn, issue)
    assert after is not None and after.status == "expired"
    assert after.video_key is None and after.poster_key is None
    assert not env.blobs.exists(str(clip.video_key)) and not env.blobs.exists(str(clip.poster_key))
    assert list(env.blobs.walk("clips")) == []
    assert env.conn.execute("SELECT count(*) FROM purge_queue").fetchone()[0] == 0
