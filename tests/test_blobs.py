"""Blob store: round trip, compression on disk, atomic writes, key validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrospec.errors import InvalidBlobKey
from retrospec.storage.blobs import (
    BlobStore,
    CorruptBlob,
    chunk_key,
    clip_key,
    compress,
    is_segment_key,
    parse_clip_key,
    read_chunk,
    replay_key,
    segment_key,
    split_frames,
    validate_id,
    validate_key,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def test_round_trip_is_compressed_and_atomic(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = b'[{"type":2,"data":{}}]' * 500
    key = chunk_key("site1", "0f8c6b1e-1111-4222-8333-944455556666", 3, data)
    stored = store.put(key, data)
    on_disk = (tmp_path / "blobs" / key).read_bytes()
    assert on_disk.startswith(ZSTD_MAGIC)
    assert stored == len(on_disk) < len(data) / 10
    assert store.get(key) == data
    assert store.exists(key) and store.size(key) == stored
    leftovers = [p for p in (tmp_path / "blobs").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
    assert store.delete([key, key]) == stored
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.get(key)


def test_file_url_root(tmp_path: Path) -> None:
    store = BlobStore(f"file://{tmp_path}/b")
    store.put("replays/s/abc12345/v1.zst", b"hello")
    assert (tmp_path / "b" / "replays/s/abc12345/v1.zst").exists()
    assert store.get("replays/s/abc12345/v1.zst") == b"hello"


def test_memory_filesystem_works_through_fsspec() -> None:
    store = BlobStore("memory://retrospec-test")
    store.put("chunks/a/abcdefgh/00000001-00.zst", b"x" * 100)
    assert store.get("chunks/a/abcdefgh/00000001-00.zst") == b"x" * 100
    keys = [k for k, _, _ in store.walk("chunks")]
    assert keys == ["chunks/a/abcdefgh/00000001-00.zst"]


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "/etc/passwd",
        "chunks/../../x",
        "chunks//x",
        "chunks/./x",
        "chunks\\x",
        "",
        "chunks/x.tmp-1234",
        "chunks/.hidden",
    ],
)
def test_bad_keys_rejected(tmp_path: Path, key: str) -> None:
    store = BlobStore(str(tmp_path))
    with pytest.raises(InvalidBlobKey):
        store.put(key, b"x")
    with pytest.raises(InvalidBlobKey):
        validate_key(key)


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "..", "", "a" * 65, "é"])
def test_ids_in_keys_are_validated(bad: str) -> None:
    with pytest.raises(InvalidBlobKey):
        validate_id(bad)
    with pytest.raises(InvalidBlobKey):
        chunk_key("site", bad, 1, b"")
    with pytest.raises(InvalidBlobKey):
        replay_key(bad, "abcdefgh", 1)


def test_conflicting_retry_gets_its_own_key() -> None:
    a = chunk_key("s", "abcdefgh", 1, b"one")
    b = chunk_key("s", "abcdefgh", 1, b"two")
    assert a != b and a.startswith("chunks/s/abcdefgh/00000001-")
    assert chunk_key("s", "abcdefgh", 1, b"one") == a


@pytest.mark.parametrize("url", ["local", "memory://retrospec-segments"])
def test_segment_frames_read_by_range(tmp_path: Path, url: str) -> None:
    store = BlobStore(str(tmp_path / "b") if url == "local" else url)
    chunks = [b'[{"type":2,"n":%d}]' % n * (n + 1) for n in range(5)]
    frames = [compress(c) for c in chunks]
    key = segment_key("site1", 1_732_560_000_123)
    store.put_raw(key, b"".join(frames))
    offset = 0
    for chunk, frame in zip(chunks, frames, strict=True):
        assert store.get_range(key, offset, len(frame)) == frame
        assert read_chunk(store, key, offset, len(frame)) == chunk
        offset += len(frame)
    assert split_frames(store.get_raw(key)) == chunks
    with pytest.raises(ValueError, match="segment"):
        store.get(key)  # would silently return the first chunk only
    with pytest.raises(CorruptBlob):
        read_chunk(store, key, offset - 3, 10)  # past the end: a truncated segment
    with pytest.raises(FileNotFoundError):
        read_chunk(store, segment_key("site1", 1_732_560_000_123), 0, 10)
    # A row from before segments (offset NULL) owns its whole blob.
    old = chunk_key("site1", "abcdefgh", 0, chunks[0])
    store.put(old, chunks[0])
    assert read_chunk(store, old, None, None) == chunks[0]


def test_segment_keys_are_generated_and_unique() -> None:
    keys = {segment_key("site1", 1_732_560_000_123) for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert validate_key(key) == key and is_segment_key(key)
        assert key.startswith("chunks/site1/20241125/184000123-") and key.endswith(".seg")
    assert not is_segment_key(chunk_key("site1", "abcdefgh", 0, b"x"))
    with pytest.raises(InvalidBlobKey):
        segment_key("../etc", 0)


def test_clip_keys_are_built_from_validated_ids_and_parse_back() -> None:
    key = clip_key("site1", "0f8c6b1e-aaaa-bbbb-cccc-123456789abc", 42, "mp4")
    assert key.startswith("clips/site1/0f8c6b1e-aaaa-bbbb-cccc-123456789abc/42-")
    assert key.endswith(".mp4") and validate_key(key) == key
    assert parse_clip_key(key) == ("site1", "0f8c6b1e-aaaa-bbbb-cccc-123456789abc", 42)
    assert clip_key("site1", "0f8c6b1e-aaaa-bbbb-cccc-123456789abc", 42, "png") != key.replace(
        ".mp4", ".png"
    )  # every render gets its own name
    for bad in [
        ("site1", "../x", 1, "mp4"),
        ("site1", "s-12345678", 0, "mp4"),
        ("site1", "s-12345678", 1, "gif"),
        ("a/b", "s-12345678", 1, "mp4"),
    ]:
        with pytest.raises(InvalidBlobKey):
            clip_key(*bad)  # type: ignore[arg-type]
    assert parse_clip_key("clips/site1/s-12345678/x.mp4") is None
    assert parse_clip_key("replays/site1/s-12345678/1-00000000.mp4") is None
