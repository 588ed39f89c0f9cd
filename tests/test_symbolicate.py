"""Symbolication in the cluster job: original frames group and display; late maps; broken maps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from retrospec.settings import Settings
from retrospec.sourcemaps.maps import load_map
from retrospec.sourcemaps.store import list_files, store_artifacts
from retrospec.sourcemaps.upload import ArtifactFile
from retrospec.storage.blobs import BlobStore, sourcemap_key
from retrospec.storage.db import DirectWriter
from tests.support.envelopes import error
from tests.support.feeds import Feed, make_feed, sid
from tests.support.sourcemaps import JS, MAP

ORIGIN = "https://shop.example.com"
DID = "0f5a3c1e-8d2b-4c6a-9e1f-2a3b4c5d6e7f"
VIEW = load_map(MAP).view


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    f = make_feed(settings)
    yield f
    f.conn.close()


def position(module: int, step: int, line_in_fn: int = 4) -> tuple[int, int]:
    """A real minified (1-based) position inside helper<module>_<step>'s body."""
    src_line = 1 + step * 10 + line_in_fn  # import line, then 10 lines per function
    token = next(
        t for t in VIEW if t.src and t.src.endswith(f"/mod{module}.js") and t.src_line == src_line
    )
    return token.dst_line + 1, token.dst_col + 1


def stack(url: str, *frames: tuple[int, int]) -> str:
    lines = ["TypeError: Cannot read properties of undefined (reading 'amount')"]
    lines += [f"    at e ({url}:{line}:{col})" for line, col in frames]
    return "\n".join(lines)


def upload(feed: Feed, release: str, name: str, map_bytes: bytes = MAP, **kw: Any) -> None:
    files = [ArtifactFile(name, JS, map_bytes, kw.get("debug_id"))]
    store_artifacts(
        DirectWriter(feed.conn).call,
        BlobStore(feed.settings.effective_blob_url),
        feed.site.id,
        release,
        "",
        files,
    )


def send(feed: Feed, release: str, text: str, **extra: Any) -> None:
    feed.send(sid(), error(stack=text, **extra), release=release)


def test_original_frames_group_one_bug_across_releases_and_split_two(feed: Feed) -> None:
    upload(feed, "1.0", "~/assets/app-AAAA1111.js")
    upload(feed, "2.0", "~/assets/app-BBBB2222.js")
    caller = position(0, 0, 7)
    bug_a = position(3, 4)
    bug_b = position(5, 2)  # same message, another function
    send(feed, "1.0", stack(f"{ORIGIN}/assets/app-AAAA1111.js", bug_a, caller))
    send(feed, "2.0", stack(f"{ORIGIN}/assets/app-BBBB2222.js", bug_a, caller))
    send(feed, "1.0", stack(f"{ORIGIN}/assets/app-AAAA1111.js", bug_b, caller))
    result = feed.cluster()
    assert result.errors == 0
    clusters = feed.clusters()
    assert len(clusters) == 2
    first = clusters[0]
    assert first["failure_count"] == 2 and first["status"] == "open"
    assert (first["first_release"], first["last_release"]) == ("1.0", "2.0")
    top = feed.frames(int(first["id"]))[0]
    assert top["mapped"] is True
    assert (top["function"], top["path"], top["line"]) == ("helper3_4", "src/mod3.js", 46)
    assert "price.amount" in top["context_line"] and len(top["pre_context"]) == 5
    assert top["raw_file"] == f"{ORIGIN}/assets/app-BBBB2222.js"
    assert first["culprit"] == "helper3_4 (src/mod3.js)"
    assert feed.frames(int(clusters[1]["id"]))[0]["function"] == "helper5_2"


def test_debug_id_matches_whatever_the_url_or_release(feed: Feed) -> None:
    # Stored under another release and a name no URL will match: only the ID can find it.
    upload(feed, "build-77", "~/elsewhere/bundle.js", debug_id=DID)
    url = f"{ORIGIN}/static/js/app.min.js?v=3"
    send(feed, "9.9", stack(url, position(2, 1)), debug_ids={url: DID.upper()})
    feed.cluster()
    (cluster,) = feed.clusters()
    assert feed.frames(int(cluster["id"]))[0]["function"] == "helper2_1"


def test_failures_before_their_maps_get_symbolicated_frames_later(feed: Feed) -> None:
    url = f"{ORIGIN}/assets/app.js"
    send(feed, "3.0", stack(url, position(1, 1)))
    send(feed, "3.0", stack(url, position(1, 1)))
    feed.cluster()
    (before,) = feed.clusters()
    assert not feed.frames(int(before["id"]))[0].get("mapped")
    upload(feed, "3.0", "~/assets/app.js")
    result = feed.cluster()
    assert result.details["frames_refreshed"] == 1
    (after,) = feed.clusters()
    assert after["fingerprint"] == before["fingerprint"]  # grouping is not changed afterwards
    top = feed.frames(int(after["id"]))[0]
    assert top["mapped"] and top["function"] == "helper1_1"
    assert after["culprit"] == "helper1_1 (src/mod1.js)"
    assert feed.value("SELECT count(*) FROM sourcemap_refresh") == 0
    # Payload purged: the stored minified frames are re-mapped from their positions.
    feed.conn.execute("UPDATE failures SET payload = NULL")
    feed.conn.execute(
        "UPDATE cluster_frames SET frames = ?",
        (json.dumps([{"function": None, "path": "/assets/app.js", "raw_file": url,
                      "line": position(1, 2)[0], "column": position(1, 2)[1], "in_app": True}]),),
    )  # fmt: skip
    upload(feed, "3.0", "~/assets/app.js")
    feed.cluster()
    assert feed.frames(int(after["id"]))[0]["function"] == "helper1_2"


def test_a_corrupt_stored_map_never_blocks_the_cluster_job(feed: Feed) -> None:
    upload(feed, "5.0", "~/assets/app.js")
    (stored,) = list_files(feed.conn, feed.site.id)
    blobs = BlobStore(feed.settings.effective_blob_url)
    blobs.put(sourcemap_key(feed.site.id, stored.map_digest), MAP[:4000])  # damaged on disk
    url = f"{ORIGIN}/assets/app.js"
    send(feed, "5.0", stack(url, position(4, 4)))
    send(feed, "5.0", stack(url, position(4, 4)))
    result = feed.cluster()
    assert result.items == 2 and result.details["map_errors"] >= 1
    (cluster,) = feed.clusters()
    top = feed.frames(int(cluster["id"]))[0]
    assert not top.get("mapped") and top["raw_file"] == url


def test_frames_without_a_map_stay_as_they_were(feed: Feed) -> None:
    upload(feed, "6.0", "~/assets/app.js")
    other = f"{ORIGIN}/js/widget.js"
    text = stack(f"{ORIGIN}/assets/app.js", position(6, 0)) + f"\n    at render ({other}:1:9)"
    send(feed, "6.0", text)
    feed.cluster()
    (cluster,) = feed.clusters()
    frames = feed.frames(int(cluster["id"]))
    assert frames[0]["mapped"] and not frames[-1].get("mapped")
    assert frames[-1]["raw_file"] == other
