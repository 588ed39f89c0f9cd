"""One source map: validation with clear errors, positions, debug IDs, pairing checks, scopes."""

from __future__ import annotations

import base64
import json

import pytest

from retrospec.issues.stackframes import parse_stack
from retrospec.issues.symbolicate import symbolicate
from retrospec.sourcemaps.maps import (
    CorruptSourceMap,
    MapMismatch,
    NotASourceMap,
    SourceMapTooLarge,
    check_pair,
    clean_source_path,
    debug_id_of,
    inline_map_of,
    load_map,
    original_position,
    source_mapping_url_of,
    valid_position,
)
from retrospec.sourcemaps.resolve import MapRef, Resolved, match_keys
from retrospec.sourcemaps.scopes import ScopeIndex, function_ranges
from retrospec.sourcemaps.store import prepare
from retrospec.sourcemaps.upload import ArtifactFile
from tests.support.paths import REPO

FIXTURE = REPO / "assets" / "bench" / "sourcemaps"
JS = (FIXTURE / "app.min.js").read_bytes()
MAP = (FIXTURE / "app.min.js.map").read_bytes()
ID = "85314830-023f-4cf1-a267-535f4e37bb17"


def test_fixture_map_loads_and_maps_a_token_to_its_original_line() -> None:
    handle = load_map(MAP)
    assert handle.info.sources == handle.info.sources_with_content == 25
    token = handle.view[len(handle.view) // 2]
    orig = original_position(handle, token.dst_line + 1, token.dst_col + 1)
    assert orig is not None and orig.file is not None
    assert orig.file.startswith("src/mod") and orig.line == token.src_line + 1
    assert orig.context_line is not None and len(orig.pre_context) <= 5


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (MAP[: len(MAP) // 2], CorruptSourceMap, "truncated"),
        (b"<html><body>Not found</body></html>", NotASourceMap, "HTML"),
        (b"", NotASourceMap, "empty"),
        (b'{"name": "pkg", "version": "1.0.0"}', NotASourceMap, "without 'mappings'"),
        (b'{"version": 2, "mappings": "", "sources": []}', NotASourceMap, "version 2"),
        (
            b'{"version": 3, "mappings": "AAAA,ZZZZ!!", "sources": ["a.js"]}',
            CorruptSourceMap,
            "vlq",
        ),
        (b'{"version": 3, "mappings": "AACA", "sources": []}', CorruptSourceMap, "source #0"),
        (b'{"version": 3, "mappings": "AAAA;;AAC", "sources": ["a.js"]}', CorruptSourceMap, "seg"),
        (b"\xff\xfe{}", NotASourceMap, "expected a JSON object"),
    ],
)
def test_bad_maps_are_refused_with_a_clear_error(
    data: bytes, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        load_map(data)


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(SourceMapTooLarge):
        load_map(MAP, max_bytes=1000)


def test_bom_and_xssi_prefix_are_accepted() -> None:
    assert len(load_map(b"\xef\xbb\xbf" + MAP).view) == len(load_map(MAP).view)
    assert len(load_map(b")]}'\n" + MAP).view) == len(load_map(MAP).view)


def test_position_zero_and_out_of_range_are_invalid() -> None:
    # symbolic's C ABI would wrap column 0 to the last token of the line.
    assert valid_position(1, 0) is None and valid_position(0, 5) is None
    assert valid_position(3, None) == (3, 1)
    assert valid_position(2**40, 1) is None


def test_a_position_past_the_mapped_tokens_of_a_line_is_unmapped() -> None:
    handle = load_map(MAP)
    lines = JS.count(b"\n") + 1
    assert original_position(handle, lines + 50, 1) is None


def test_debug_ids_in_bundles_maps_and_the_sentry_snippet() -> None:
    assert debug_id_of(b"var a=1;\n//# debugId=" + ID.upper().encode() + b"\n") == ID
    assert debug_id_of(b'{"version":3,"debug_id":"' + ID.encode() + b'","mappings":""}') == ID
    assert debug_id_of(b'{"version":3,"debugId":"' + ID.replace("-", "").encode() + b'"}') == ID
    snippet = b'!function(){e._sentryDebugIds[n]="' + ID.encode() + b'"}();var x=1;'
    assert debug_id_of(snippet) == ID
    assert debug_id_of(JS) is None and debug_id_of(MAP) is None
    assert debug_id_of(b'{"debugId":"not-a-uuid"}') is None


def test_source_mapping_url_and_inline_maps() -> None:
    assert source_mapping_url_of(JS) == "app.min.js.map"
    inline = b"var a;\n//# sourceMappingURL=data:application/json;base64," + base64.b64encode(MAP)
    assert inline_map_of(inline) == MAP
    with pytest.raises(CorruptSourceMap):
        inline_map_of(b"//# sourceMappingURL=data:application/json;base64,@@@")


def test_map_of_another_file_is_a_mismatch() -> None:
    small = b"function a(){throw new Error('x')}\n//# sourceMappingURL=a.js.map\n"
    with pytest.raises(MapMismatch, match=r"another file|line"):
        check_pair(small, load_map(MAP))
    assert check_pair(JS, load_map(MAP)) == []
    other = json.loads(MAP)
    other["debugId"] = ID
    js_with_id = JS + b"\n//# debugId=00000000-0000-4000-8000-000000000001\n"
    with pytest.raises(MapMismatch, match="debug ID"):
        check_pair(js_with_id, load_map(json.dumps(other).encode()))


def test_clean_source_paths() -> None:
    assert clean_source_path("../../src/cart.js") == "src/cart.js"
    assert clean_source_path("webpack://shop/./src/cart.js") == "src/cart.js"
    assert clean_source_path("webpack:///./~/lodash/map.js") == "node_modules/lodash/map.js"
    assert clean_source_path("turbopack:///[project]/app/page.tsx") == "app/page.tsx"
    assert (
        clean_source_path("../node_modules/.pnpm/x@1/node_modules/x/i.js") == "node_modules/x/i.js"
    )
    assert clean_source_path("src/webpack:///c.js", "src/") == "c.js"


def test_function_ranges_name_methods_arrows_and_bindings() -> None:
    source = (
        "export class Cart {\n  total() {\n    return 1;\n  }\n}\n"
        "const priceOf = (item) => item.price;\n"
        "const api = { load() { return 2; } };\n"
        "function outer() { [1].map(() => 3); }\n"
    )
    names = {r[4] for r in function_ranges(source, "src/cart.js")}
    assert {"Cart.total", "priceOf", "api.load", "outer"} <= names
    index = ScopeIndex({0: function_ranges(source, "src/cart.js")})
    assert index.name_at(0, 3, 5) == (True, "Cart.total")
    assert index.name_at(0, 8, 30) == (True, None)  # the anonymous arrow inside outer
    assert index.name_at(0, 8, 3) == (True, "outer")
    assert ScopeIndex.from_json(index.to_json()).name_at(0, 3, 5) == (True, "Cart.total")
    ts = "export function load(id: string): number {\n  return id.length as number;\n}\n"
    assert function_ranges(ts, "api.ts")[0][4] == "load"


def test_symbolicate_names_the_original_function() -> None:
    (prepared,) = prepare([ArtifactFile("~/app.min.js", JS, MAP, None)])
    scopes = ScopeIndex.from_json(prepared.blobs[prepared.scopes_digest or ""])
    resolved = Resolved(
        MapRef("s", "~/app.min.js", prepared.info.digest, None, None), load_map(MAP), scopes, None
    )
    handle = resolved.map
    # A token inside helper3_4's loop body, as a browser would report it.
    token = next(
        t
        for t in handle.view
        if t.src and t.src.endswith("mod3.js") and t.src_line == 4 * 10 + 4 and t.name
    )
    where = f"https://shop.example/app.min.js:{token.dst_line + 1}:{token.dst_col + 1}"
    stack = f"TypeError: x\n    at a ({where})"
    frames, errors = symbolicate(parse_stack(stack, collapse=False), lambda f: resolved)
    assert errors == 0
    (frame,) = frames
    assert frame.mapped and frame.function == "helper3_4" and frame.path == "src/mod3.js"
    source = handle.view.get_sourceview(token.src_id)
    assert frame.line == token.src_line + 1 and frame.context_line == source[token.src_line]
    assert "for (const item of items)" in frame.context_line


def test_match_keys_cover_full_url_and_any_origin() -> None:
    assert match_keys("https://Shop.example/assets/a.js?v=2#x") == [
        "https://shop.example/assets/a.js",
        "~/assets/a.js",
    ]
    assert match_keys("/assets/a.js") == ["/assets/a.js", "~/assets/a.js"]
