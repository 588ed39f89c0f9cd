"""POST /api/v1/sourcemaps: upload tokens, body formats, bad input answered 4xx, nothing kept."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from retrospec.app import create_app
from retrospec.cli import main as cli
from retrospec.settings import Settings
from tests.support.data import add_site
from tests.support.sourcemaps import JS, MAP, good_members, tar_bytes, zip_bytes

PATH = "/api/v1/sourcemaps"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[object]]:
    with TestClient(create_app(settings, start_jobs=False)) as c:
        yield c


def token_for(settings: Settings, site: str) -> str:
    result = CliRunner().invoke(
        cli.app,
        ["sites", "upload-token", site, "--json"],
        env={"RETROSPEC_DATA_DIR": settings.data_dir},
    )
    assert result.exit_code == 0, result.output
    token = json.loads(result.output)["upload_token"]
    assert isinstance(token, str) and token.startswith("rsu_")
    return token


def stored(settings: Settings) -> int:
    with sqlite3.connect(settings.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM sourcemap_files").fetchone()[0])


def blob_count(settings: Settings) -> int:
    root = Path(settings.effective_blob_url) / "sourcemaps"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def bearer(token: str, ctype: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": ctype}


def test_tar_gz_upload_with_the_upload_token(
    settings: Settings, client: TestClient[object]
) -> None:
    add_site(settings, "shop")
    token = token_for(settings, "shop")
    body = tar_bytes(good_members(), gz=True)
    res = client.post(
        f"{PATH}?release=3.1&url_prefix=~/static",
        content=body,
        headers=bearer(token, "application/gzip"),
    )
    assert res.status_code == 201, res.text
    doc = res.json()
    assert doc["release"] == "3.1"
    assert [f["name"] for f in doc["files"]] == ["~/static/assets/app.min.js"]
    assert stored(settings) == 1
    with sqlite3.connect(settings.db_path) as conn:
        (hashed,) = conn.execute("SELECT token_hash FROM upload_tokens").fetchone()
    assert token not in hashed  # stored hashed


def test_multipart_upload(settings: Settings, client: TestClient[object]) -> None:
    add_site(settings, "shop")
    token = token_for(settings, "shop")
    res = client.post(
        PATH,
        data={"release": "4.0"},
        files=[
            ("files", ("assets/app.min.js", JS, "application/javascript")),
            ("files", ("assets/app.min.js.map", MAP, "application/json")),
        ],
        headers={"Authorization": f"Bearer {token}"},
    )
    assert res.status_code == 201, res.text
    assert res.json()["files"][0]["name"] == "~/assets/app.min.js"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (zip_bytes({"../../etc/x.js.map": MAP}), 400, "escapes the upload root"),
        (
            tar_bytes({"assets/app.min.js": JS, "assets/app.min.js.map": MAP[:9000]}),
            400,
            "truncated",
        ),
        (
            tar_bytes({"assets/app.min.js": b"var a=1;\n", "assets/app.min.js.map": MAP}),
            400,
            "another file",
        ),
        (b"PK\x03\x04garbage", 400, "not a valid zip"),
        (tar_bytes({"readme.txt": b"hi"}), 400, "no source maps"),
    ],
)
def test_bad_uploads_are_4xx_and_store_nothing(
    settings: Settings, client: TestClient[object], body: bytes, status: int, words: str
) -> None:
    add_site(settings, "shop")
    token = token_for(settings, "shop")
    res = client.post(
        f"{PATH}?release=1", content=body, headers=bearer(token, "application/octet-stream")
    )
    assert res.status_code == status and words in res.json()["error"], res.text
    assert stored(settings) == 0 and blob_count(settings) == 0


def test_credentials(settings: Settings, client: TestClient[object]) -> None:
    _site, ingest_key = add_site(settings, "shop")
    body = tar_bytes(good_members())
    ctype = "application/x-tar"
    res = client.post(f"{PATH}?release=1", content=body, headers=bearer(ingest_key, ctype))
    assert res.status_code == 401 and "public ingest key" in res.json()["error"]
    res = client.post(f"{PATH}?release=1", content=body, headers={"Content-Type": ctype})
    assert res.status_code == 401 and "Bearer" in res.json()["error"]
    old = token_for(settings, "shop")
    new = token_for(settings, "shop")  # a new token revokes the old one
    res = client.post(f"{PATH}?release=1", content=body, headers=bearer(old, ctype))
    assert res.status_code == 401 and "revoked" in res.json()["error"]
    res = client.post(PATH, content=body, headers=bearer(new, ctype))
    assert res.status_code == 400 and "release" in res.json()["error"]
    res = client.post(f"{PATH}?release=1", content=body, headers=bearer(new, "text/html"))
    assert res.status_code == 415
    assert stored(settings) == 0


def test_a_200_mb_upload_is_refused(settings: Settings, client: TestClient[object]) -> None:
    add_site(settings, "shop")
    token = token_for(settings, "shop")

    def chunks() -> Iterator[bytes]:
        block = b"\0" * (1 << 20)
        for _ in range(200):
            yield block

    res = client.post(
        f"{PATH}?release=1", content=chunks(), headers=bearer(token, "application/x-tar")
    )
    assert res.status_code == 413 and "limit" in res.json()["error"]
    declared = client.post(
        f"{PATH}?release=1",
        content=b"x",
        headers={**bearer(token, "application/x-tar"), "Content-Length": str(200 << 20)},
    )
    assert declared.status_code == 413
    assert stored(settings) == 0
