"""The SDK bundles and their HTTP endpoints, and the /demo page (in-process, no browser)."""

from __future__ import annotations

import contextlib
import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from retrospec.app import create_app
from retrospec.paths import assets_dir
from retrospec.sdk import GZIP_BUDGET, build, bundles, compact, module_snippet, script_snippet
from retrospec.sdk_build import DIST_NAME, header, sources_digest
from retrospec.settings import Settings, load_settings
from retrospec.sites import demo_key
from retrospec.startup import instance_secret
from tests.support.data import make_settings


@contextlib.contextmanager
def client_for(settings: Settings) -> Iterator[TestClient[object]]:
    with TestClient(create_app(settings, start_jobs=False)) as client:
        yield client


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[object]]:
    with client_for(settings) as c:
        yield c


def test_classic_bundle_with_recorder_is_within_the_gzip_budget() -> None:
    size = len(gzip.compress(bundles().script.body, compresslevel=9))
    print(f"\n/sdk/retrospec.js: {len(bundles().script.body)} bytes, {size} bytes gzip")
    assert size <= GZIP_BUDGET == 32 * 1024


def test_bundles_wrap_the_recorder_and_expose_only_the_entry_points() -> None:
    built = build()
    script = built.script.body.decode()
    module = built.module.body.decode()
    for text in (script, module):
        assert text.startswith("/*! RetroSpec browser SDK")
        assert "Permission is hereby granted" in text  # rrweb's MIT notice travels with it
        assert "(function (define, module, exports) {" in text
        assert "}).call(rrwebHolder);" in text
    assert "window.Retrospec = { initRetrospec: initRetrospec" in script
    assert script.rstrip().endswith("})();")
    assert module.rstrip().endswith("export { initRetrospec };")
    assert "window.Retrospec" not in module
    assert built.script.digest != built.module.digest


def test_minified_core_is_fresh_and_served() -> None:
    # Editing assets/sdk/*.js without `python -m retrospec.sdk_build` fails here.
    dist = assets_dir() / "sdk" / DIST_NAME
    first_line = dist.read_text().partition("\n")[0] + "\n"
    assert first_line == header(sources_digest()), "run: python -m retrospec.sdk_build"
    served = bundles().script.body.decode()
    assert dist.read_text().partition("\n")[2] in served
    assert "var RetrospecCore=function(" in served


def test_stale_minified_core_falls_back_to_the_sources(tmp_path: Path) -> None:
    root = tmp_path / "assets"
    shutil.copytree(assets_dir(), root)
    (root / "sdk" / "main.js").write_text(
        (root / "sdk" / "main.js").read_text() + "\n// edited\nvar EDITED_MARKER = 1;\n"
    )
    served = build(root).script.body.decode()
    assert "var EDITED_MARKER = 1;" in served  # the readable sources, not the stale minified file
    assert "var RetrospecCore = function (RRWEB, SDK_VERSION) {" in served


def test_compact_drops_comment_lines_and_indentation_only() -> None:
    source = '// header\nfunction f() {\n  // why\n  return "a // b"; // keep\n}\n\n'
    assert compact(source) == 'function f() {\nreturn "a // b"; // keep\n}\n'
    with pytest.raises(ValueError, match="template literals"):
        compact("const s = `a\n  b`;\n")


def test_bundles_fail_loudly_when_a_part_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build(tmp_path)


def test_script_is_served_with_caching_cors_and_gzip(client: TestClient[object]) -> None:
    bundle = bundles().script
    res = client.get("/sdk/retrospec.js", headers={"accept-encoding": "identity"})
    assert res.status_code == 200
    assert res.headers["content-type"] == "text/javascript; charset=utf-8"
    assert res.headers["access-control-allow-origin"] == "*"
    assert res.headers["cache-control"] == "public, max-age=300"
    assert res.headers["etag"] == f'"{bundle.digest}"'
    assert "content-encoding" not in res.headers
    assert res.content == bundle.body

    again = client.get("/sdk/retrospec.js", headers={"if-none-match": f'"{bundle.digest}"'})
    assert again.status_code == 304
    assert again.content == b""

    pinned = client.get(f"/sdk/retrospec.js?v={bundle.digest}")
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = client.get("/sdk/retrospec.js?v=0123456789ab")
    assert stale.headers["cache-control"] == "public, max-age=300"

    zipped = client.get("/sdk/retrospec.js", headers={"accept-encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == bundle.body  # httpx inflates it; the bytes are the same script
    refused = client.get("/sdk/retrospec.js", headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_module_is_served_as_javascript_with_cors(client: TestClient[object]) -> None:
    res = client.get("/sdk/retrospec.mjs", headers={"origin": "https://shop.example"})
    assert res.status_code == 200
    assert res.headers["content-type"] == "text/javascript; charset=utf-8"
    assert res.headers["access-control-allow-origin"] == "*"
    assert res.content == bundles().module.body


def test_demo_page_embeds_the_sdk_for_the_demo_site(
    client: TestClient[object], settings: Settings
) -> None:
    res = client.get("/demo")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    html = res.text
    assert demo_key(instance_secret(settings)) in html
    assert f"/sdk/retrospec.js?v={bundles().script.digest}" in html
    for kind in ("error", "rejection", "console", "fetch", "xhr", "network", "capture"):
        assert f'data-fail="{kind}"' in html
    assert 'type="password"' in html
    assert 'href="/"' in html  # where to look next
    css = client.get("/assets/demo/demo.css")
    assert css.status_code == 200
    assert client.get("/assets/demo/demo.js").status_code == 200
    assert client.get("/demo/api/fail").status_code == 500
    assert client.post("/demo/api/fail").status_code == 500


def test_demo_is_off_with_retrospec_demo_false(tmp_path: Path) -> None:
    env = {"RETROSPEC_DATA_DIR": str(tmp_path / "data"), "RETROSPEC_DEMO": "false"}
    settings = load_settings(None, env=env).settings
    assert settings.demo == "false" and not settings.demo_enabled
    with client_for(settings) as client:
        assert client.get("/demo").status_code == 404
        assert client.get("/demo/api/fail").status_code == 404
        assert client.get("/sdk/retrospec.js").status_code == 200


def test_snippets_embed_the_sdk_and_cannot_break_out_of_the_script(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", public_url="https://rs.example/")
    script = script_snippet(settings.base_url, "rsk_abc", "shop</script>")
    assert '<script src="https://rs.example/sdk/retrospec.js"' in script
    assert '"apiBaseUrl": "https://rs.example"' in script
    assert "shop\\u003c/script>" in script
    module = module_snippet(settings.base_url, "rsk_abc")
    assert 'import { initRetrospec } from "https://rs.example/sdk/retrospec.mjs";' in module
    assert '"apiKey": "rsk_abc"' in module
