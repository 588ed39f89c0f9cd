"""The segmented replay artifact: cuts, checkpoints, the one reader, storage per minute."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrospec.bench.sessions import chunked, recorded_session
from retrospec.errors import NotFound
from retrospec.replay import artifact
from retrospec.replay import queries as replays
from retrospec.storage.blobs import compress, decompress
from tests.support.replays import T0, Env, make_env, sid


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path / "data")
    yield e
    e.conn.close()


def raw(events: list[dict[str, Any]]) -> list[tuple[int, int, bytes]]:
    return [(int(e["timestamp"]), int(e["type"]), json.dumps(e).encode()) for e in events]


def test_checkpoints_start_at_full_snapshots_with_their_lead() -> None:
    events = recorded_session(7, T0, checkout_ms=120_000)
    blob, segments, total = artifact.encode(raw(events))
    assert segments[0].checkpoint and segments[0].start_ts == T0
    checkpoints = [s for s in segments if s.checkpoint]
    assert len(checkpoints) == 4  # the start and a checkout every 2 minutes
    frames = [json.loads(decompress(blob[s.offset : s.offset + s.length])) for s in segments]
    for segment, frame in zip(segments, frames, strict=True):
        assert len(frame) == segment.events
        assert frame[0]["timestamp"] == segment.start_ts
        assert frame[-1]["timestamp"] == segment.end_ts
        if segment.checkpoint:  # Meta, then the full snapshot: playable on its own
            assert [e["type"] for e in frame[:2]] == [4, 2]
        else:
            assert 2 not in {e["type"] for e in frame}
        assert segment.end_ts - segment.start_ts <= artifact.SEGMENT_MAX_MS + 1_000
    # Back to back, in time order, every event once.
    assert [e for f in frames for e in f] == events
    assert segments[-1].offset + segments[-1].length == len(blob)
    # Uncompressed: the events' bytes, a comma between two, brackets around each segment.
    assert total == sum(len(r[2]) for r in raw(events)) + len(events) + len(segments)


def test_plain_cuts_without_checkouts_and_never_between_a_lead_and_its_snapshot() -> None:
    events = recorded_session(4, T0, checkout_ms=None)
    _blob, segments, _total = artifact.encode(raw(events))
    assert [s.checkpoint for s in segments] == [True] + [False] * (len(segments) - 1)
    assert len(segments) >= 4
    # (ts, type, bytes): a big full snapshot stays with its Meta; the next event is cut off.
    heads = [(0, 3, 10), (1, 4, 10), (2, 2, 600_000), (3, 3, 10)]
    assert artifact.cut_points(heads) == [(0, True), (1, True), (3, False)]
    # A DomContentLoaded/Meta lead within a second of its snapshot starts the checkpoint.
    heads = [(0, 4, 10), (0, 2, 10), (5, 3, 10), (900, 0, 10), (1000, 4, 10), (1400, 2, 10)]
    assert artifact.cut_points(heads) == [(0, True), (3, True)]
    # Past a minute without a snapshot: a plain cut.
    heads = [(0, 4, 10), (0, 2, 10), (30_000, 3, 10), (60_001, 3, 10), (61_000, 3, 10)]
    assert artifact.cut_points(heads) == [(0, True), (3, False)]
    assert artifact.cut_points([]) == []


def test_out_of_order_chunks_make_time_ordered_segments(env: Env) -> None:
    """Batches arriving in any order (retries, two tabs' flushes) build the same artifact."""
    events = recorded_session(5, T0)
    batches = chunked(events, 5_000)
    order = list(range(len(batches)))
    random.Random(3).shuffle(order)
    for seq in order:
        assert env.send(sid(1), seq, batches[seq])
    env.run(force=True)
    session = replays.get_session(env.conn, sid(1))
    assert session.replay_status == "ready" and session.segments is not None
    assert json.loads(replays.load_events(env.blobs, session.replay_key or "")) == events
    starts = [s.start_ts for s in session.segments]
    assert starts == sorted(starts) and len(starts) == len(set(starts))
    # Each segment read alone is its own JSON array (what the player fetches).
    pieces = [
        json.loads(decompress(replays.load_segment(env.blobs, session, i)))
        for i in range(len(session.segments))
    ]
    assert [e for p in pieces for e in p] == events
    with pytest.raises(NotFound):
        replays.load_segment(env.blobs, session, len(session.segments))


def test_artifacts_from_before_segments_still_play(env: Env) -> None:
    events = recorded_session(1, T0)
    assert env.send(sid(2), 0, events)
    env.run(force=True)
    row = env.session(sid(2))
    # What an older build wrote: one frame, no index.
    body = json.dumps(events).encode()
    env.blobs.put_raw(row["replay_key"], compress(body))
    env.conn.execute("UPDATE sessions SET replay_segments = NULL WHERE id = ?", (sid(2),))
    session = replays.get_session(env.conn, sid(2))
    assert session.segments is None
    assert json.loads(replays.load_events(env.blobs, row["replay_key"])) == events
    assert json.loads(decompress(replays.load_segment(env.blobs, session, 0))) == events
    with pytest.raises(NotFound):
        replays.load_segment(env.blobs, session, 1)


def test_open_cost_counts_from_the_checkpoint_before_a_time() -> None:
    seg = artifact.Segment
    index = [
        seg(0, 59, 0, 100, 5, True),
        seg(60, 119, 100, 10, 5, False),
        seg(120, 179, 110, 50, 5, True),
        seg(180, 239, 160, 20, 5, False),
    ]
    assert artifact.open_cost(index, 999, 30) == 100
    assert artifact.open_cost(index, 999, 100) == 110
    assert artifact.open_cost(index, 999, 200) == 70  # the checkpoint at 120 and its follower
    assert artifact.open_cost(None, 999, 200) == 999
    assert artifact.parse_index(artifact.dump_index(index)) == index
    assert artifact.parse_index("not json") is None
    assert artifact.parse_index('[["x"]]') is None


def test_stored_bytes_per_recorded_minute_stay_within_target(env: Env) -> None:
    """Chunks as ingested plus the segmented artifact, for a 10-minute session with checkouts."""
    minutes = 10
    events = recorded_session(minutes, T0)
    for seq, batch in enumerate(chunked(events, 5_000)):
        assert env.send(sid(3), seq, batch)
    env.run(force=True)
    keys = env.conn.execute(
        "SELECT DISTINCT blob_key FROM chunks WHERE session_id = ?", (sid(3),)
    ).fetchall()
    chunk_bytes = sum(env.blobs.size(k[0]) for k in keys)
    replay_bytes = env.session(sid(3))["replay_bytes"]
    per_minute = (chunk_bytes + replay_bytes) / minutes / 1000
    print(f"stored per minute: {per_minute:.1f} kB (replay {replay_bytes / minutes / 1000:.1f})")
    assert per_minute <= 60
    # The checkpoints cost little: the replay alone stays a fraction of the target.
    assert replay_bytes / minutes / 1000 <= 20
