"""The replay job end to end: real ingest rows and chunk blobs in; artifacts, summaries, markers
out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from retrospec.errors import NotFound
from retrospec.ingest.prepare import (
    compress_events,
    decode_envelope,
    event_bytes,
    prepare,
)
from retrospec.ingest.write import PreparedBatch, store_batches
from retrospec.jobs.context import JobContext, JobResult
from retrospec.replay import job as replay_job
from retrospec.replay import queries as replays
from retrospec.replay.job import THROTTLE_FROM_BYTES, dirty_sessions
from retrospec.scheduler import JobFailed, run_job
from retrospec.storage.blobs import BlobStore, compress, replay_key
from retrospec.storage.db import connect, reading
from retrospec.storage.migrations import prepare_database
from tests.support.data import add_site, make_settings
from tests.support.envelopes import CHROME_UA
from tests.support.replays import T0, Env, make_env, sid
from tests.support.rrweb import PAGE, click, move, page_load, typed

pytestmark = pytest.mark.backends


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path / "data")
    yield e
    e.conn.close()


def read(env: Env, fn: Callable[[Any], Any]) -> Any:
    """Run a read query function on a read-only connection."""
    with reading(env.settings.database) as conn:
        return fn(conn)


# --- ordering and duplicates ------------------------------------------------------------------


def test_out_of_order_and_duplicated_chunks_play_in_order(env: Env) -> None:
    s = sid(1)
    chunk0 = [*page_load(T0), move(T0 + 100), click(T0 + 900, 11)]
    # Overlap: the SDK re-sent the last event of chunk 0 at the start of chunk 1, and chunk 1
    # carries its own events slightly out of timestamp order.
    chunk1 = [click(T0 + 900, 11), move(T0 + 1600, 30), move(T0 + 1500, 20), click(T0 + 2000, 13)]
    chunk2 = [move(T0 + 3000, 40), click(T0 + 3100, 16)]
    assert env.send(s, 2, chunk2)
    assert env.send(s, 0, chunk0)
    assert env.send(s, 1, chunk1)
    # The same seq retried, once identical and once with different bytes: both are no-ops.
    assert not env.send(s, 1, chunk1)
    assert not env.send(s, 1, [*chunk1, move(T0 + 1700)])

    result = env.run()
    assert result.items == 1 and result.errors == 0

    row = env.session(s)
    assert row["replay_status"] == "ready" and row["replay_reason"] is None
    assert row["replay_chunks"] == row["chunks"] == 3
    assert row["replay_key"] == replay_key(env.site.id, s, 3)
    events = env.events(s)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert [e["type"] for e in events[:2]] == [4, 2]  # meta, then the full snapshot
    assert len(events) == 9  # 4 + (4 - 1 duplicate) + 2
    identities = [json.dumps(e, sort_keys=True) for e in events]
    assert len(set(identities)) == len(identities)
    # Ties keep chunk order: the two moves of chunk 1 were sorted by time.
    assert [e["data"].get("positions", [{}])[0].get("x") for e in events[4:6]] == [20, 30]
    assert row["replay_events"] == 9
    assert row["replay_start_ts"] == T0 and row["replay_end_ts"] == T0 + 3100
    assert row["duration_ms"] == 3100
    assert row["clicks"] == 3
    assert env.run().items == 0  # nothing dirty: idempotent


def test_events_before_the_first_full_snapshot_are_left_out(env: Env) -> None:
    s = sid(2)
    env.send(s, 0, [click(T0 - 5000, 11), move(T0 - 4000), *page_load(T0), click(T0 + 500, 11)])
    env.run()
    row = env.session(s)
    assert row["replay_status"] == "ready"
    assert "2 events before the first full snapshot" in row["replay_reason"]
    events = env.events(s)
    assert [e["type"] for e in events] == [4, 2, 3]
    assert row["replay_start_ts"] == T0


def test_no_snapshot_then_ready(env: Env) -> None:
    s = sid(3)
    env.send(s, 0, [move(T0 + 10), click(T0 + 20, 11)])
    env.run()
    row = env.session(s)
    assert row["replay_status"] == "no_snapshot"
    assert "no full snapshot yet" in row["replay_reason"]
    assert row["replay_key"] is None and env.artifacts() == []
    assert env.run().items == 0  # not retried until a chunk arrives
    env.send(s, 1, [*page_load(T0 + 1000), click(T0 + 1500, 13)])
    env.run()
    row = env.session(s)
    assert row["replay_status"] == "ready" and row["replay_key"]
    assert env.events(s)[0]["type"] == 4


# --- corrupt chunks ---------------------------------------------------------------------------


def test_corrupt_chunks_mark_their_session_and_the_rest_still_build(env: Env) -> None:
    bad_zstd, bad_json, missing, good = sid(10), sid(11), sid(12), sid(13)
    for s in (bad_zstd, bad_json, missing, good):
        env.send(s, 0, page_load(T0))
        env.send(s, 1, [click(T0 + 1000, 11)])
    env.blobs.put_raw(env.chunk_key(bad_zstd, 1), b"this is not zstd at all")
    env.blobs.put_raw(env.chunk_key(bad_json, 1), compress(b'[{"type": 3, "timestamp": '))
    env.blobs.delete([env.chunk_key(missing, 1)])

    result = run_job(env.ctx(), "replays")
    assert result.items == 4 and result.errors == 3
    assert result.details["ready"] == 1 and result.details["error"] == 3
    reasons = {s: env.session(s)["replay_reason"] for s in (bad_zstd, bad_json, missing)}
    assert "chunk 1: not valid zstd" in reasons[bad_zstd]
    assert "chunk 1: not a JSON array of events" in reasons[bad_json]
    assert "chunk 1: blob" in reasons[missing] and "missing" in reasons[missing]
    for s in (bad_zstd, bad_json, missing):
        row = env.session(s)
        assert row["replay_status"] == "error"
        assert row["replay_chunks"] == row["chunks"] == 2  # not retried in a loop
    assert env.session(good)["replay_status"] == "ready"
    status = env.conn.execute("SELECT status FROM job_runs ORDER BY id DESC").fetchone()[0]
    assert status == "partial"

    assert env.run().items == 0
    # A new chunk gives the session another try (still broken, still recorded).
    env.send(bad_zstd, 2, [click(T0 + 2000, 13)])
    again = env.run()
    assert again.items == 1 and again.details["error"] == 1


def test_malformed_events_inside_a_valid_chunk_are_skipped(env: Env) -> None:
    s = sid(14)
    env.send(s, 0, [*page_load(T0), {"type": 3}, None, click(T0 + 10, 11)])  # type: ignore[list-item]
    env.run()
    row = env.session(s)
    assert row["replay_status"] == "ready"
    assert "2 malformed events were skipped" in row["replay_reason"]
    assert len(env.events(s)) == 3


# --- interrupted runs -------------------------------------------------------------------------


def _fill(env: Env) -> list[str]:
    ids = [sid(20 + i) for i in range(4)]
    for i, s in enumerate(ids):
        env.send(s, 0, page_load(T0 + i), received_at=T0 + 60_000 + i)
        env.send(
            s,
            1,
            [click(T0 + 1000, 11), typed(T0 + 1500, 15, "a"), click(T0 + 3000, 13)],
            [{"kind": "error", "ts": T0 + 2000, "type": "TypeError", "message": "x is undefined"}],
            received_at=T0 + 61_000 + i,
        )
    return ids


def _state(env: Env, ids: list[str]) -> list[Any]:
    cols = (
        "replay_status, replay_reason, replay_chunks, replay_bytes, replay_events, "
        "replay_start_ts, replay_end_ts, duration_ms, active_ms, pages, clicks, rage_clicks"
    )
    out: list[Any] = []
    for s in ids:
        out.append(
            tuple(env.conn.execute(f"SELECT {cols} FROM sessions WHERE id = ?", (s,)).fetchone())
        )
        out.append(env.markers(s))
        out.append(env.events(s))
    out.append([k.split("/", 2)[2] for k in env.artifacts()])  # without the site id
    return out


def test_interrupted_run_then_rerun_equals_one_clean_run(tmp_path: Path) -> None:
    clean = make_env(tmp_path / "clean")
    crashed = make_env(tmp_path / "crashed")
    ids = _fill(clean)
    assert _fill(crashed) == ids

    assert clean.run().items == 4

    built: list[str] = []

    def crash_after_half(stage: str, session_id: str) -> None:
        if stage == "built":
            built.append(session_id)
            if len(built) == 3:  # two sessions committed, the third has its artifact only
                raise RuntimeError("power cut")

    with pytest.raises(JobFailed, match="power cut"):
        run_job(crashed.ctx(hook=crash_after_half), "replays")
    done = [s for s in ids if crashed.session(s)["replay_status"] == "ready"]
    assert len(done) == 2
    assert len(crashed.artifacts()) == 3  # the third artifact exists but no row points at it
    again = crashed.run()
    assert again.items == 2
    assert _state(crashed, ids) == _state(clean, ids)
    clean.conn.close()
    crashed.conn.close()


def test_crash_between_commit_and_cleanup_is_swept_by_the_next_build(env: Env) -> None:
    s = sid(30)
    env.send(s, 0, page_load(T0))
    env.run()

    def crash(stage: str, session_id: str) -> None:
        if stage == "committed":
            raise RuntimeError("killed")

    env.send(s, 1, [click(T0 + 100, 11)])
    with pytest.raises(RuntimeError):
        env.run(hook=crash)
    assert env.session(s)["replay_key"].endswith("/v2.zst")
    assert [k.rsplit("/", 1)[1] for k in env.artifacts()] == ["v1.zst", "v2.zst"]
    env.send(s, 2, [click(T0 + 200, 13)])
    env.run()
    assert [k.rsplit("/", 1)[1] for k in env.artifacts()] == ["v3.zst"]


def test_overlapping_runs_keep_the_newest_build(env: Env) -> None:
    s = sid(31)
    env.send(s, 0, page_load(T0))
    inner: list[JobResult] = []

    def second_run_meanwhile(stage: str, session_id: str) -> None:
        # While this run holds an artifact for 1 chunk, a chunk arrives and another run
        # builds and commits version 2 first.
        if stage == "built" and not inner:
            env.send(s, 1, [click(T0 + 100, 11)])
            inner.append(env.run())

    result = env.run(hook=second_run_meanwhile)
    assert inner[0].items == 1
    assert result.details["skipped"] == 1
    row = env.session(s)
    assert row["replay_chunks"] == 2 and row["replay_key"].endswith("/v2.zst")
    assert [k.rsplit("/", 1)[1] for k in env.artifacts()] == ["v2.zst"]
    assert row["clicks"] == 1


# --- in-progress sessions ---------------------------------------------------------------------


def test_in_progress_session_is_extended_and_the_old_version_deleted(env: Env) -> None:
    s = sid(40)
    env.send(s, 0, [*page_load(T0), click(T0 + 500, 11)])
    env.run()
    first = env.session(s)
    assert first["replay_status"] == "ready" and first["replay_key"].endswith("/v1.zst")
    assert first["replay_events"] == 3 and first["clicks"] == 1
    old_key = first["replay_key"]

    env.send(s, 1, [move(T0 + 2000), click(T0 + 2500, 13)])
    env.send(s, 2, [click(T0 + 4000, 16)])
    env.run()
    row = env.session(s)
    assert row["replay_key"] == replay_key(env.site.id, s, 3)
    assert row["replay_events"] == 6 and row["clicks"] == 3
    assert row["replay_end_ts"] == T0 + 4000 and row["duration_ms"] == 4000
    assert not env.blobs.exists(old_key)
    assert env.artifacts() == [row["replay_key"]]
    assert [m[0] for m in env.markers(s)] == ["navigation", "click", "click", "click"]
    assert [e["timestamp"] for e in env.events(s)][-1] == T0 + 4000


def test_chunk_arriving_during_the_build_leaves_the_session_dirty(env: Env) -> None:
    s = sid(41)
    env.send(s, 0, page_load(T0))

    def late_chunk(stage: str, session_id: str) -> None:
        if stage == "built" and env.session(s)["chunks"] == 1:
            env.send(s, 1, [click(T0 + 100, 11)])

    env.run(hook=late_chunk)
    row = env.session(s)
    # The build of 1 chunk is stored (playable now), and the newer chunk still counts as dirty.
    assert row["replay_status"] == "ready" and row["replay_chunks"] == 1 and row["chunks"] == 2
    assert [r[0] for r in dirty_sessions(env.conn, 10, T0)] == [s]
    env.run()
    assert env.session(s)["replay_chunks"] == 2 and env.session(s)["clicks"] == 1


def test_rebuilds_of_big_sessions_wait_in_proportion_to_their_size(env: Env) -> None:
    s = sid(42)
    env.send(s, 0, page_load(T0))
    env.run()
    env.send(s, 1, [click(T0 + 100, 11)])
    built_at = env.session(s)["replay_built_at"]
    # Pretend the session is big (512 KB): its rebuild waits 20 s per MB after the last build.
    env.conn.execute("UPDATE sessions SET raw_bytes = ? WHERE id = ?", (THROTTLE_FROM_BYTES * 2, s))
    assert dirty_sessions(env.conn, 10, built_at + 1000) == []
    assert [r[0] for r in dirty_sessions(env.conn, 10, built_at + 90_000)] == [s]
    assert [r[0] for r in dirty_sessions(env.conn, 10, built_at, force=True)] == [s]
    plan = env.conn.execute(
        "EXPLAIN QUERY PLAN " + replay_job._DIRTY_SQL, (0, 1, 1, 1, built_at, 5)
    ).fetchall()
    assert "sessions_replay_dirty" in " ".join(str(tuple(r)) for r in plan)


def test_batches_are_bounded_by_sessions_and_bytes(tmp_path: Path) -> None:
    env = make_env(tmp_path / "d", job_batch_size=3)
    for i in range(5):
        env.send(sid(50 + i), 0, page_load(T0 + i), received_at=T0 + 60_000 + i)
    first = env.run()
    assert first.items == 3 and first.details["waiting"] == 2
    assert env.run().items == 2
    for i in range(3):
        env.send(sid(50 + i), 1, [click(T0 + 100, 11)])
    assert env.run(max_run_bytes=1).items == 1  # always at least one session
    env.conn.close()


def test_expired_sessions_are_skipped(env: Env) -> None:
    s = sid(43)
    env.send(s, 0, page_load(T0))
    env.conn.execute(
        "UPDATE sessions SET replay_status = 'expired', expired_at = 1 WHERE id = ?", (s,)
    )
    assert env.run().items == 0
    assert env.session(s)["replay_key"] is None


# --- read API ---------------------------------------------------------------------------------


def test_read_api(env: Env) -> None:
    a, b = sid(60), sid(61)
    env.send(
        a,
        0,
        [*page_load(T0), click(T0 + 1000, 11)],
        [
            {
                "kind": "network",
                "ts": T0 + 1200,
                "method": "post",
                "request_url": "https://shop.example.com/api/orders/17?x=1",
                "status": 500,
                "url": PAGE,
            }
        ],
        user={"id": "u-1", "email": "Bob@Example.com", "name": "Bob"},
        received_at=T0 + 70_000,
    )
    env.send(b, 0, page_load(T0 + 5), received_at=T0 + 65_000)
    env.run()
    # A failure-only batch after the build still shows on the timeline.
    env.send(a, 1, None, [{"kind": "error", "ts": T0 + 1500, "type": "Error", "message": "late"}])
    assert env.session(a)["chunks"] == env.session(a)["replay_chunks"]

    view = read(env, lambda c: replays.get_session(c, a))
    assert view.site_name == "shop" and view.user_email == "Bob@Example.com"
    assert view.browser == "Chrome 126" and view.os == "Windows"
    assert view.replay_status == "ready" and view.pages == ["https://shop.example.com/cart"]
    assert view.failures == 2 and view.clicks == 1 and not view.expired

    markers = read(env, lambda c: replays.list_markers(c, a))
    assert [(m.kind, m.label, m.offset_ms) for m in markers] == [
        ("navigation", "https://shop.example.com/cart", 0),
        ("click", 'button "Pay now"', 1000),
        ("failure", "POST /api/orders/17 → 500", 1200),
        ("failure", "Error: late", 1500),
    ]
    assert all(m.failure_id for m in markers if m.kind == "failure")
    assert [(m.kind, m.label, m.offset_ms) for m in markers] == env.markers(a)

    failures = read(env, lambda c: replays.list_session_failures(c, a))
    assert [(f.kind, f.offset_ms, f.status, f.method) for f in failures] == [
        ("network", 1200, 500, "POST"),
        ("error", 1500, None, None),
    ]

    items, total = read(env, lambda c: replays.list_sessions(c))
    assert total == 2 and [v.id for v in items] == [a, b]  # a has the newest last_seen_at
    items, total = read(env, lambda c: replays.list_sessions(c, with_failures=True))
    assert [v.id for v in items] == [a] and total == 1
    items, total = read(env, lambda c: replays.list_sessions(c, user="bob@example.com"))
    assert [v.id for v in items] == [a]
    items, total = read(env, lambda c: replays.list_sessions(c, site="shop", limit=1, offset=1))
    assert [v.id for v in items] == [b] and total == 2
    items, total = read(env, lambda c: replays.list_sessions(c, site=env.site.id))
    assert total == 2

    with pytest.raises(NotFound):
        read(env, lambda c: replays.get_session(c, "nope-0000"))
    with pytest.raises(NotFound):
        read(env, lambda c: replays.list_markers(c, "nope-0000"))
    with pytest.raises(NotFound):
        read(env, lambda c: replays.list_sessions(c, site="no-such-site"))
    with pytest.raises(NotFound):
        replays.load_events(env.blobs, replay_key(env.site.id, a, 99))


def test_job_via_run_job_is_recorded(env: Env) -> None:
    env.send(sid(70), 0, page_load(T0))
    result = run_job(env.ctx(), "replays")
    assert result.items == 1
    row = env.conn.execute("SELECT job, status, items, errors FROM job_runs").fetchone()
    assert tuple(row) == ("replays", "ok", 1, 0)


def test_http_ingest_then_the_job_on_the_server_writer(tmp_path: Path) -> None:
    """The server's path: batches POSTed to /api/v1/ingest, the job writing through Writer."""
    import gzip

    from litestar.testing import TestClient

    from retrospec.app import create_app
    from retrospec.storage.db import Writer

    settings = make_settings(tmp_path / "data")
    prepare_database(settings.database)
    _site, key = add_site(settings, "shop")
    s = sid(80)
    batches = [
        (1, [click(T0 + 400, 11), click(T0 + 500, 11), click(T0 + 600, 11)]),
        (0, [*page_load(T0), move(T0 + 100)]),
    ]
    with TestClient(create_app(settings, start_jobs=False)) as client:
        for seq, events in batches:
            body = {"session": {"id": s, "started_at": T0, "user_agent": CHROME_UA}, "seq": seq}
            body["events"] = events
            answer = client.post(
                f"/api/v1/ingest?key={key}",
                content=gzip.compress(json.dumps(body).encode()),
                headers={"content-encoding": "gzip"},
            )
            assert answer.status_code == 202, answer.text
    writer = Writer(settings.database)
    writer.start()
    try:
        ctx = JobContext(
            settings=settings, blobs=BlobStore(settings.effective_blob_url), write=writer.call
        )
        assert run_job(ctx, "replays").items == 1
    finally:
        writer.stop()
    conn = connect(settings.database, readonly=True)
    try:
        row = conn.execute(
            "SELECT replay_status, replay_events, clicks, rage_clicks FROM sessions"
        ).fetchone()
        assert tuple(row) == ("ready", 6, 3, 1)
        kinds = [m.kind for m in replays.list_markers(conn, s)]
        assert kinds == ["navigation", "click", "rage_click", "click", "click"]
    finally:
        conn.close()


# --- chunk layouts: segments and the single blobs of older rows ------------------------------


def pending(env: Env, session_id: str, seq: int, events: list[dict[str, Any]]) -> PreparedBatch:
    """A batch as the server's writer receives it: events compressed, not yet written."""
    body = {"session": {"id": session_id, "started_at": T0, "user_agent": CHROME_UA}, "seq": seq}
    body["events"] = events
    ev = decode_envelope(json.dumps(body).encode())
    raw = event_bytes(ev)
    assert raw is not None
    return prepare(env.site, ev, compress_events(raw), T0 + 60_000 + seq)


def test_old_single_blob_chunks_and_segments_build_together(env: Env) -> None:
    s, other = sid(90), sid(91)
    assert env.send(s, 0, page_load(T0))  # an old row: its own blob, no offset
    # seq 1 of s and seq 0 of another session in one writer group: one segment.
    group = [pending(env, s, 1, [click(T0 + 500, 11)]), pending(env, other, 0, page_load(T0))]
    assert store_batches(env.conn, env.blobs, group) == [True, True]
    rows = env.conn.execute(
        "SELECT session_id, seq, blob_key, blob_offset FROM chunks ORDER BY session_id, seq"
    ).fetchall()
    assert rows[0]["blob_offset"] is None and rows[1]["blob_offset"] is not None
    assert rows[1]["blob_key"] == rows[2]["blob_key"]  # s/1 and other/0 share the segment

    result = env.run()
    assert result.items == 2 and result.errors == 0
    assert [e["type"] for e in env.events(s)] == [4, 2, 3]
    assert [e["type"] for e in env.events(other)] == [4, 2]

    # A segment cut short: the session whose frame was lost fails, the other still builds.
    a, b = sid(92), sid(93)
    assert store_batches(
        env.conn, env.blobs, [pending(env, a, 0, page_load(T0)), pending(env, b, 0, page_load(T0))]
    ) == [True, True]
    key, end_of_a = env.conn.execute(
        "SELECT blob_key, blob_offset + blob_length FROM chunks WHERE session_id = ?", (a,)
    ).fetchone()
    path = Path(env.settings.effective_blob_url) / key
    path.write_bytes(path.read_bytes()[: end_of_a + 5])
    result = env.run()
    assert result.details["ready"] == 1 and result.details["error"] == 1
    assert env.session(a)["replay_status"] == "ready"
    assert "chunk 0: blob is truncated" in env.session(b)["replay_reason"]


def test_a_site_with_a_huge_backlog_cannot_starve_another_sites_replays(env: Env) -> None:
    # "garbage": 6 big sessions, older than the one session of "blog" that waits behind them.
    blog, _ = add_site(env.settings, "blog")
    garbage = [sid(500 + i) for i in range(6)]
    for i, s in enumerate(garbage):
        env.send(s, 0, page_load(T0 + i), received_at=T0 + 1000 + i)
    other = Env(env.settings, blog, env.conn, env.blobs)
    late = sid(600)
    other.send(late, 0, page_load(T0), received_at=T0 + 9000)
    env.conn.execute(
        "UPDATE sessions SET raw_bytes = 1000000 WHERE site_id = ?", (env.site.id,)
    )  # pretend each garbage session is 1 MB
    order = dirty_sessions(env.conn, 10, T0 + 10_000)
    # Sites take turns: the blog's session comes second, not seventh.
    assert [r[0] for r in order][:2] == [garbage[0], late]
    # A 2 MB run budget: each of the two sites gets its 1 MB share.
    picked, total = replay_job.pick_fairly(order, 2_000_000)
    assert picked == [garbage[0], late] and total == 1_000_000 + order[1][1]
    result = env.run(max_run_bytes=2_000_000)
    assert env.session(late)["replay_status"] == "ready"
    assert result.details["waiting"] == 5


def test_pick_fairly_caps_each_site_at_its_share_of_the_run() -> None:
    candidates = [("a1", 90, "a"), ("b1", 90, "b"), ("a2", 20, "a"), ("c1", 200, "c")]
    # Shares of 33 bytes: a site's first session may pass its share, but not the run's budget.
    assert replay_job.pick_fairly(candidates, 100) == (["a1"], 90)
    # Shares of 100: a2 would take site a past its share, c1 the run past its budget.
    assert replay_job.pick_fairly(candidates, 300) == (["a1", "b1"], 180)
    assert replay_job.pick_fairly(candidates, 1000) == (["a1", "b1", "a2", "c1"], 400)
