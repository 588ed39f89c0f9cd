"""sentry-cli's source map upload (chunk-upload + artifactbundle/assemble) into our map store:
the real CLI from npm against a real server, and the protocol's bad input answered clearly."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from retrospec.app import create_app
from retrospec.cli import main as cli
from retrospec.settings import Settings
from retrospec.sites import create_upload_token
from retrospec.sourcemaps.maps import load_map
from retrospec.storage.db import DirectWriter
from tests.support.bundlers import build_esbuild, bundle_of, sentry_cli_upload, write_app
from tests.support.data import add_site
from tests.support.envelopes import error
from tests.support.feeds import Feed, make_feed, sid
from tests.support.servers import ServerProcess
from tests.support.sourcemaps import JS, MAP

ORG = "/api/0/organizations/o"


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    f = make_feed(settings)
    yield f
    f.conn.close()


@pytest.fixture
def token(feed: Feed) -> str:
    return str(DirectWriter(feed.conn).call(lambda c: create_upload_token(c, feed.site.id)))


@pytest.fixture
def client(settings: Settings, feed: Feed) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings, start_jobs=False)) as c:
        yield c


def sentry_bundle(files: dict[str, tuple[str, bytes, dict[str, str]]], **top: str) -> bytes:
    """An artifact bundle as sentry-cli lays it out: SYSB, version 2, then a zip with a manifest
    ({zip path: (url, bytes, headers)})."""
    buf = io.BytesIO()
    manifest: dict[str, Any] = {"files": {}, **top}
    with zipfile.ZipFile(buf, "w") as z:
        for path, (url, body, headers) in files.items():
            z.writestr(path, body)
            kind = "source_map" if path.endswith(".map") else "minified_source"
            manifest["files"][path] = {"type": kind, "url": url, "headers": headers}
        z.writestr("manifest.json", json.dumps(manifest))
    return b"SYSB\x02\x00\x00\x00" + buf.getvalue()


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def send_chunks(client: TestClient[Any], token: str, chunks: list[bytes]) -> Any:
    files = [("file_gzip", (sha1(c), gzip.compress(c), "application/octet-stream")) for c in chunks]
    return client.post(
        f"{ORG}/chunk-upload/", files=files, headers={"Authorization": f"Bearer {token}"}
    )


def assemble(client: TestClient[Any], token: str, bundle: bytes, **extra: Any) -> Any:
    body = {"checksum": sha1(bundle), "chunks": [sha1(bundle)], "projects": ["p"], **extra}
    return client.post(
        f"{ORG}/artifactbundle/assemble/", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def stored(feed: Feed) -> list[tuple[Any, ...]]:
    return feed.rows("SELECT name, release, origin FROM sourcemap_files ORDER BY name")


GOOD = {
    "files/_/_/assets/app.min.js": ("~/assets/app.min.js", JS, {"sourcemap": "app.min.js.map"}),
    "files/_/_/assets/app.min.js.map": ("~/assets/app.min.js.map", MAP, {}),
}


def test_the_protocol_stores_a_bundle_once_all_chunks_arrived(
    client: TestClient[Any], token: str, feed: Feed
) -> None:
    options = client.get(f"{ORG}/chunk-upload/", headers={"Authorization": f"Bearer {token}"})
    assert options.status_code == 200
    doc = options.json()
    assert doc["url"] == "organizations/o/chunk-upload/" and doc["hashAlgorithm"] == "sha1"
    bundle = sentry_bundle(GOOD)
    first = assemble(client, token, bundle, version="2.0")
    assert first.json() == {"state": "not_found", "missingChunks": [sha1(bundle)], "detail": None}
    assert send_chunks(client, token, [bundle]).status_code == 200
    done = assemble(client, token, bundle, version="2.0")
    assert done.json()["state"] == "ok", done.text
    assert stored(feed) == [("~/assets/app.min.js", "2.0", "sentry-cli")]
    # A repeated assemble (a retry, --wait polling) answers the same without resending chunks.
    assert assemble(client, token, bundle, version="2.0").json()["state"] == "ok"
    assert len(stored(feed)) == 1


def test_credentials_are_the_upload_token(
    client: TestClient[Any], settings: Settings, token: str
) -> None:
    url = f"{ORG}/chunk-upload/"
    assert client.get(url).status_code == 401
    wrong = client.get(url, headers={"Authorization": "Bearer rsu_nope"})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]
    _site, ingest_key = add_site(settings, "other")
    public = client.get(url, headers={"Authorization": f"Bearer {ingest_key}"})
    assert public.status_code == 401 and "public ingest key" in public.json()["detail"]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/0/nothing/here", headers=auth).status_code == 404
    assert client.put(url, headers=auth).status_code == 405


@pytest.mark.parametrize(
    ("bundle", "words"),
    [
        (sentry_bundle({"files/x.js.map": ("~/../../etc/x.js.map", MAP, {})}), "escapes"),
        (sentry_bundle({"files/a.js.map": ("~/a.js.map", MAP[:5000], {})}), "truncated"),
        (sentry_bundle({"files/a.js": ("~/a.js", JS, {})}), "no source maps"),
        (b"SYSB\x02\x00\x00\x00PK\x03\x04garbage", "not a valid zip"),
        (sentry_bundle({"files/a.js.map": ("file:///a.js.map", MAP, {})}), "neither"),
    ],
)
def test_a_bad_bundle_is_an_error_state_and_stores_nothing(
    client: TestClient[Any], token: str, feed: Feed, bundle: bytes, words: str
) -> None:
    assert send_chunks(client, token, [bundle]).status_code == 200
    res = assemble(client, token, bundle, version="1")
    assert res.status_code == 200 and res.json()["state"] == "error", res.text
    assert words in res.json()["detail"]
    assert stored(feed) == []


def test_bad_chunks_and_requests_are_4xx(client: TestClient[Any], token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    body = b"some bytes"
    mismatch = [("file_gzip", ("0" * 40, gzip.compress(body), "application/octet-stream"))]
    res = client.post(f"{ORG}/chunk-upload/", files=mismatch, headers=auth)
    assert res.status_code == 400 and "does not match its checksum" in res.json()["detail"]
    not_gzip = [("file_gzip", (sha1(body), body, "application/octet-stream"))]
    res = client.post(f"{ORG}/chunk-upload/", files=not_gzip, headers=auth)
    assert res.status_code == 400 and "not gzip" in res.json()["detail"]
    bomb = gzip.compress(b"\0" * (9 << 20))
    res = client.post(
        f"{ORG}/chunk-upload/", files=[("file_gzip", ("1" * 40, bomb, "x/y"))], headers=auth
    )
    assert res.status_code == 413
    for bad in ({"checksum": "x", "chunks": []}, {"chunks": ["a" * 40]}, []):
        res = client.post(f"{ORG}/artifactbundle/assemble/", json=bad, headers=auth)
        assert res.status_code == 400, res.text
    joined = sentry_bundle(GOOD)
    send_chunks(client, token, [joined])
    lied = {"checksum": "f" * 40, "chunks": [sha1(joined)]}
    res = client.post(f"{ORG}/artifactbundle/assemble/", json=lied, headers=auth)
    assert res.json()["state"] == "error" and "checksum" in res.json()["detail"]


@pytest.mark.slow
def test_real_sentry_cli_uploads_and_the_next_error_is_symbolicated(
    serve: Any, settings: Settings, feed: Feed, token: str, tmp_path: Path
) -> None:
    server: ServerProcess = serve(data_dir=Path(settings.data_dir), jobs="false")
    out = build_esbuild(write_app(tmp_path / "app", 1), tmp_path / "dist")
    log = sentry_cli_upload(
        out, server.base_url, token, "--release", "shop@1", "--url-prefix", "~/assets"
    )
    bundle = bundle_of(out)
    assert stored(feed) == [(f"~/assets/{bundle.name}", "shop@1", "sentry-cli")], log
    handle = load_map((out / f"{bundle.name}.map").read_bytes())
    token_ = next(t for t in handle.view if t.src and t.src.endswith("cart.js") and t.name)
    url = f"https://shop.example.com/assets/{bundle.name}"
    stack = f"TypeError: x\n    at e ({url}:{token_.dst_line + 1}:{token_.dst_col + 1})"
    feed.send(sid(), error(stack=stack), release="shop@1")
    feed.cluster()
    (cluster,) = feed.clusters()
    top = feed.frames(int(cluster["id"]))[0]
    # sentry-cli rewrites the map (sources relative to the upload root), still the original file
    assert top["mapped"] and top["path"].endswith("src/cart.js"), top
    # Uploading the same build again changes nothing (idempotent, no error).
    sentry_cli_upload(
        out, server.base_url, token, "--release", "shop@1", "--url-prefix", "~/assets"
    )
    assert len(stored(feed)) == 1


def test_purge_sweeps_chunks_of_bundles_never_assembled(
    client: TestClient[Any], token: str, settings: Settings
) -> None:
    assert send_chunks(client, token, [b"half a bundle"]).status_code == 200
    root = Path(settings.effective_blob_url) / "uploads"
    assert sum(1 for p in root.rglob("*.zst")) == 1
    env = {"RETROSPEC_DATA_DIR": settings.data_dir}
    kept = CliRunner().invoke(cli.app, ["purge", "--json"], env=env)
    assert kept.exit_code == 0 and sum(1 for p in root.rglob("*.zst")) == 1  # within the grace
    gone = CliRunner().invoke(cli.app, ["purge", "--orphan-grace", "0s", "--json"], env=env)
    assert gone.exit_code == 0, gone.output
    assert sum(1 for p in root.rglob("*.zst")) == 0


def test_release_calls_of_the_bundler_plugins_are_answered(
    client: TestClient[Any], token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    made = client.post("/api/0/projects/o/p/releases/", json={"version": "1.0"}, headers=auth)
    assert made.status_code == 201 and made.json()["version"] == "1.0"
    final = client.put("/api/0/projects/o/p/releases/1.0/", json={}, headers=auth)
    assert final.status_code == 200 and final.json()["version"] == "1.0"
    prev = client.get(f"{ORG}/releases/1.0/previous-with-commits/", headers=auth)
    assert prev.status_code == 200
    assert client.get(f"{ORG}/repos/", headers=auth).json() == []
    assert (
        client.post("/api/0/projects/o/p/releases/", content=b"{", headers=auth).status_code == 400
    )
