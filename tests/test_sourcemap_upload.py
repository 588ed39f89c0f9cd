"""Uploads: directories and archives, pairing, hostile input, the store, and the CLI commands."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from retrospec.cli import main as cli
from retrospec.errors import RetrospecError
from retrospec.settings import Settings
from retrospec.sourcemaps.store import list_files, store_artifacts
from retrospec.sourcemaps.upload import (
    ArtifactFile,
    Budget,
    UploadRejected,
    UploadTooLarge,
    archive_members,
    pair,
    path_members,
)
from retrospec.storage.blobs import BlobStore, sourcemap_key
from retrospec.storage.db import DirectWriter, connect
from tests.support.data import add_site
from tests.support.shop import run_cli
from tests.support.sourcemaps import (
    JS,
    MAP,
    build_dir,
    good_members,
    tar_bytes,
    tar_with_link,
    zip_bytes,
)

BIG = 1 << 30


def run(settings: Settings, *args: str) -> Result:
    env = {"RETROSPEC_DATA_DIR": settings.data_dir}
    return CliRunner().invoke(cli.app, list(args), env=env)


def said(result: Result) -> str:
    """What a command printed, or the error the entry point would print as one line."""
    return result.output + ("" if result.exception is None else str(result.exception))


def rows(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(settings.db_path) as conn:
        return list(conn.execute(sql).fetchall())


def blob_files(settings: Settings) -> list[Path]:
    root = Path(settings.effective_blob_url) / "sourcemaps"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_pairing_by_source_mapping_url_by_name_and_by_debug_id(tmp_path: Path) -> None:
    did = "85314830-023f-4cf1-a267-535f4e37bb17"
    js_id = JS.replace(b"//# sourceMappingURL=app.min.js.map", b"//# debugId=" + did.encode())
    map_id = MAP.replace(b'"version": 3,', f'"version": 3, "debugId": "{did}",'.encode(), 1)
    members = {
        "a/app.min.js": JS,  # -> a/app.min.js.map by its sourceMappingURL
        "a/app.min.js.map": MAP,
        "b/named.js": JS.replace(b"sourceMappingURL=app.min.js.map", b"x"),  # by name
        "b/named.js.map": MAP,
        "c/hashed-1.js": js_id,  # by debug ID: its map has another name
        "maps/other-name.map": map_id,
    }
    collected = pair(iter(members.items()), "~/static")
    by_name = {f.name: f for f in collected.files}
    assert set(by_name) == {
        "~/static/a/app.min.js",
        "~/static/b/named.js",
        "~/static/c/hashed-1.js",
    }
    assert by_name["~/static/c/hashed-1.js"].debug_id == did
    assert by_name["~/static/c/hashed-1.js"].map == map_id


@pytest.mark.parametrize(
    ("archive", "words"),
    [
        (zip_bytes({"../../etc/evil.js": b"x"}), "escapes the upload root"),
        (tar_bytes({"/tmp/evil.js": b"x"}), "absolute path"),
        (tar_bytes({"assets/../../evil.js.map": b"x"}), "escapes the upload root"),
        (tar_with_link(), "link"),
        (zip_bytes({"assets/big.js.map": b" " * (30 << 20)}, compress=True), "zip bomb"),
        (b"PK\x03\x04 truncated", "not a valid zip"),
        (tar_bytes(good_members(), gz=True)[:3000], "corrupt|not a valid tar"),
    ],
)
def test_hostile_archives_are_refused(archive: bytes, words: str) -> None:
    with pytest.raises(UploadRejected, match=words):
        pair(archive_members(archive, "upload.bin", Budget(BIG)))


def test_size_limits() -> None:
    with pytest.raises(UploadTooLarge, match="limit"):
        list(archive_members(tar_bytes(good_members()), "x.tar", Budget(100_000)))


def test_store_is_all_or_nothing(settings: Settings, tmp_path: Path) -> None:
    site, _ = add_site(settings)
    blobs = BlobStore(settings.effective_blob_url)
    conn = connect(settings.db_path)
    good = ArtifactFile("~/assets/app.min.js", JS, MAP, None)
    truncated = ArtifactFile("~/assets/b.js", JS, MAP[:5000], None)
    with pytest.raises(RetrospecError, match=r"b\.js: source map JSON is truncated"):
        store_artifacts(DirectWriter(conn).call, blobs, site.id, "1.0", "", [good, truncated])
    assert list_files(conn, site.id) == [] and blob_files(settings) == []
    wrong = ArtifactFile("~/assets/small.js", b"function a(){}\n", MAP, None)
    with pytest.raises(RetrospecError, match=r"another file|line"):
        store_artifacts(DirectWriter(conn).call, blobs, site.id, "1.0", "", [good, wrong])
    assert list_files(conn, site.id) == [] and blob_files(settings) == []
    result = store_artifacts(DirectWriter(conn).call, blobs, site.id, "1.0", "", [good])
    (stored,) = result.files
    assert stored.sources == stored.sources_with_content == 25 and stored.js_digest
    assert blobs.get(sourcemap_key(site.id, stored.map_digest)) == MAP
    # The same files for another release share their blobs.
    store_artifacts(DirectWriter(conn).call, blobs, site.id, "1.1", "", [good])
    assert len(blob_files(settings)) == 3  # map, bundle, scope index
    conn.close()


def test_cli_upload_list_pin_delete(settings: Settings, tmp_path: Path) -> None:
    add_site(settings, "shop")
    dist = build_dir(tmp_path / "dist", "main-AB12CD34.js")
    result = run(settings, "sourcemaps", "upload", "shop", str(dist), "--release", "2.0", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["release"] == "2.0" and doc["site"]["name"] == "shop"
    assert [f["name"] for f in doc["files"]] == ["~/assets/main-AB12CD34.js"]
    assert doc["files"][0]["sources_with_content"] == 25
    listed = json.loads(run(settings, "sourcemaps", "list", "shop", "--json").output)
    assert [f["release"] for f in listed["files"]] == ["2.0"]
    assert run(settings, "sourcemaps", "pin", "shop", "--release", "2.0").exit_code == 0
    assert rows(settings, "SELECT pinned FROM sourcemap_files") == [(1,)]
    assert run(settings, "sourcemaps", "delete", "shop", "--release", "2.0").exit_code == 0
    assert rows(settings, "SELECT count(*) FROM sourcemap_files") == [(0,)]
    assert blob_files(settings) == []
    missing = run(settings, "sourcemaps", "delete", "shop", "--release", "2.0")
    assert missing.exit_code == 1


def test_cli_upload_refuses_bad_input_and_stores_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    add_site(settings, "shop")
    evil = tmp_path / "evil.zip"
    evil.write_bytes(zip_bytes({"../../x.js.map": MAP}))
    result = run(settings, "sourcemaps", "upload", "shop", str(evil), "--release", "1")
    assert result.exit_code == 1 and "escapes the upload root" in said(result)
    corrupt = build_dir(tmp_path / "corrupt")
    (corrupt / "assets" / "app.min.js.map").write_bytes(MAP[:-200])
    result = run(settings, "sourcemaps", "upload", "shop", str(corrupt), "--release", "1")
    assert result.exit_code == 1 and "truncated" in said(result)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(settings, "sourcemaps", "upload", "shop", str(empty), "--release", "1")
    assert result.exit_code == 1 and "no source maps" in said(result)
    no_release = run(settings, "sourcemaps", "upload", "shop", str(corrupt))
    assert no_release.exit_code == 2
    assert rows(settings, "SELECT count(*) FROM sourcemap_files") == [(0,)]
    assert blob_files(settings) == []


def test_upload_over_the_size_limit(settings: Settings, tmp_path: Path) -> None:
    add_site(settings, "shop")
    dist = build_dir(tmp_path / "dist")
    env = {"RETROSPEC_DATA_DIR": settings.data_dir, "RETROSPEC_SOURCEMAP_MAX_UPLOAD_MB": "1"}
    (dist / "assets" / "huge.js").write_bytes(b"x" * (2 << 20))
    args = ["sourcemaps", "upload", "shop", str(dist), "--release", "1"]
    result = CliRunner().invoke(cli.app, args, env=env)
    assert result.exit_code == 1 and "limit" in said(result)
    assert rows(settings, "SELECT count(*) FROM sourcemap_files") == [(0,)]


def test_path_members_refuses_links_out_of_the_tree(tmp_path: Path) -> None:
    dist = build_dir(tmp_path / "dist")
    (dist / "assets" / "secret.js").symlink_to("/etc/hostname")
    with pytest.raises(UploadRejected, match="link"):
        list(path_members([dist], Budget(BIG)))


def test_entry_point_prints_one_line_errors(settings: Settings, tmp_path: Path) -> None:
    add_site(settings, "shop")
    evil = tmp_path / "evil.tar"
    evil.write_bytes(tar_with_link())
    env = {"RETROSPEC_DATA_DIR": settings.data_dir}
    done = run_cli(env, "sourcemaps", "upload", "shop", str(evil), "--release", "1")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "link 'assets/app.min.js'" in done.stderr
