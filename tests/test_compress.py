"""Compressed responses: negotiation, HTML/JSON by the middleware, pre-compressed assets."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest
from litestar.testing import TestClient

from retrospec.app import create_app
from retrospec.paths import assets_dir
from retrospec.settings import Settings
from retrospec.web.assets import AssetIndex
from retrospec.web.compress import VariantCache, accepted, choose, response_codings
from tests.support.accounts import add_user, login


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[object]]:
    with TestClient(create_app(settings, start_jobs=False)) as c:
        add_user(settings)
        login(c)
        yield c


def raw_get(client: TestClient[object], url: str, coding: str) -> tuple[dict[str, str], bytes]:
    """Headers and the body exactly as sent (not decoded)."""
    with client.stream("GET", url, headers={"accept-encoding": coding}) as res:
        assert res.status_code == 200, res.status_code
        return dict(res.headers), b"".join(res.iter_raw())


def test_accept_encoding_parsing() -> None:
    assert accepted("gzip, deflate, br, zstd") == {"gzip": 1, "deflate": 1, "br": 1, "zstd": 1}
    assert accepted("gzip;q=0, identity") == {"identity": 1}
    assert accepted("br;q=0.5, *;q=0.1") == {"br": 0.5, "*": 0.1, "gzip": 0.1, "zstd": 0.1}
    assert accepted("") == {}
    assert choose("gzip, zstd", ("zstd", "gzip")) == "zstd"
    assert choose("gzip, zstd;q=0", ("zstd", "gzip")) == "gzip"
    assert choose("identity", ("zstd", "gzip")) is None
    assert choose("GZIP;Q=1", ("gzip",)) == "gzip"


def test_variant_cache_is_bounded() -> None:
    cache = VariantCache(4_000)
    made: list[str] = []

    def make(name: str, size: int) -> bytes:
        made.append(name)
        return b"x" * size

    for name in "abcde":
        assert cache.get_or_make((name,), lambda n=name: make(n, 900)) == b"x" * 900
    assert cache.get_or_make(("e",), lambda: make("again", 900)) == b"x" * 900
    assert "again" not in made  # a hit
    cache.get_or_make(("a",), lambda: make("a2", 900))
    assert "a2" in made  # the oldest was evicted to stay under 4,000 bytes
    big = cache.get_or_make(("big",), lambda: make("big", 3_000))
    assert len(big) == 3_000
    cache.get_or_make(("big",), lambda: make("big2", 3_000))
    assert "big2" in made  # too big to keep


def test_pages_and_json_are_compressed_with_vary(client: TestClient[object]) -> None:
    headers, body = raw_get(client, "/", "gzip")
    assert headers["content-encoding"] == "gzip"
    page = gzip.decompress(body)
    assert b"<html" in page
    assert int(headers["content-length"]) == len(body)
    vary = headers["vary"]
    assert "Accept-Encoding" in vary and "HX-Request" in vary and "Cookie" in vary

    headers, body = raw_get(client, "/", "gzip, br")
    assert headers["content-encoding"] == "br" and b"<html" in brotli.decompress(body)

    headers, body = raw_get(client, "/", "identity")
    assert "content-encoding" not in headers and b"<html" in body
    assert "Accept-Encoding" in headers["vary"]  # caches must still key on it

    # JSON (the OpenAPI document) too; a tiny response is not worth it.
    headers, body = raw_get(client, "/api/v1/openapi.json", "gzip")
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body).startswith(b"{")
    headers, body = raw_get(client, "/healthz", "gzip")
    assert "content-encoding" not in headers and body.startswith(b"{")


def test_static_assets_are_precompressed(client: TestClient[object]) -> None:
    name = "vendor/rrweb-player-2.1.6.umd.min.js"
    original = (assets_dir() / name).read_bytes()
    url = f"/assets/{name}"
    br_headers, br_body = raw_get(client, url, "gzip, br")
    assert br_headers["content-encoding"] == "br" and brotli.decompress(br_body) == original
    assert len(br_body) < len(original) / 3
    gz_headers, gz_body = raw_get(client, url, "gzip")
    assert gz_headers["content-encoding"] == "gzip" and gzip.decompress(gz_body) == original
    plain_headers, plain_body = raw_get(client, url, "identity")
    assert "content-encoding" not in plain_headers and plain_body == original
    for h in (br_headers, gz_headers, plain_headers):
        assert h["vary"] == "Accept-Encoding"
    assert len({br_headers["etag"], gz_headers["etag"], plain_headers["etag"]}) == 3
    again = client.get(
        url, headers={"accept-encoding": "gzip", "if-none-match": gz_headers["etag"]}
    )
    assert again.status_code == 304
    # Compressed once: the second response is the very same bytes.
    assert raw_get(client, url, "gzip, br")[1] == br_body


def test_warm_compresses_every_text_asset_ahead_of_use(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    big = f"console.log({os.urandom(8).hex()!r});\n".encode() * 200
    (tmp_path / "js" / "big.js").write_bytes(big)
    (tmp_path / "js" / "tiny.js").write_bytes(b"1;")
    (tmp_path / "logo.png").write_bytes(os.urandom(4096))
    index = AssetIndex(tmp_path)
    assert index.compressible("js/big.js")
    assert not index.compressible("js/tiny.js") and not index.compressible("logo.png")
    assert all(index.packed("js/big.js", c) is None for c in response_codings())
    index.warm()
    assert gzip.decompress(index.packed("js/big.js", "gzip") or b"") == big
    assert brotli.decompress(index.packed("js/big.js", "br") or b"") == big
    assert index.packed("js/tiny.js", "gzip") is None and index.packed("logo.png", "br") is None


def test_a_server_start_warms_the_assets(client: TestClient[object]) -> None:
    index: AssetIndex = client.app.state.assets
    names = [n for n in index.files if index.compressible(n)]
    assert "vendor/rrweb-player-2.1.6.umd.min.js" in names
    deadline = time.monotonic() + 60
    while any(index.packed(n, "br") is None for n in names) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Made in the background, without any request asking for them.
    assert all(index.packed(n, c) is not None for n in names for c in response_codings())


def test_an_asset_asked_for_before_warming_is_compressed_and_kept(
    client: TestClient[object], tmp_path: Path
) -> None:
    # Content no other index in this process has, so no variant of it exists yet.
    body = f"/* {os.urandom(8).hex()} */\n".encode() + b".a { color: red }\n" * 300
    (tmp_path / "late.css").write_bytes(body)
    index = AssetIndex(tmp_path)
    client.app.state.assets = index
    assert index.packed("late.css", "br") is None
    headers, sent = raw_get(client, "/assets/late.css", "gzip, br")
    assert headers["content-encoding"] == "br" and brotli.decompress(sent) == body
    assert index.packed("late.css", "br") == sent
