"""One source map: validate and parse it (Sentry's `symbolic`), find positions, read debug IDs.

Conventions: browsers print 1-based lines AND columns (`at f (url:1:282)`); source maps and
symbolic's SourceMapView are 0-based; symbolic's SourceMapCache is 1-based and wraps a column
of 0 to the last token of the line (its C ABI subtracts 1 in u32), so positions are checked
here before they reach Rust. Maps are untrusted input: size first, then JSON with clear errors,
then the shape, and only then symbolic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from symbolic.exceptions import SymbolicError
from symbolic.sourcemap import SourceMapView
from symbolic.sourcemapcache import SourceMapCache

from retrospec.errors import BadRequest

MAX_MAP_BYTES = 64 * 1024 * 1024  # Sentry takes 40 MiB per file; 20+ MiB maps exist
MAX_MINIFIED_BYTES = 32 * 1024 * 1024
CONTEXT_LINES = 5
MAX_CONTEXT_CHARS = 300  # generated originals can have 100 KB lines


class SourceMapError(BadRequest):
    """A map (or a bundle/map pair) that cannot be used; the message says why."""


class SourceMapTooLarge(SourceMapError):
    """A map or bundle over the size limit."""

    http_status = 413


class NotASourceMap(SourceMapError):
    """JSON or text that is not a v3 source map (an HTML 404 page, a JS file, package.json)."""


class CorruptSourceMap(SourceMapError):
    """Looks like a source map but cannot be decoded (truncated, bad VLQ, bad source index)."""


class MapMismatch(SourceMapError):
    """The map does not belong to this minified file (other debug ID, positions off the file)."""


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What a map says about itself (recorded at upload)."""

    digest: str  # sha256 of the bytes as given
    size: int
    debug_id: str | None
    file: str | None
    source_root: str | None
    sources: int
    sources_with_content: int
    ignore_list: frozenset[int]


@dataclass(eq=False)
class LoadedMap:
    """A parsed map; lookups are thread-safe."""

    info: MapInfo
    raw: bytes  # the JSON with any BOM / XSSI prefix removed (what symbolic parsed)
    view: SourceMapView
    _caches: dict[str, SourceMapCache] = field(default_factory=dict)
    _lines: dict[int, list[str] | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def source_lines(self, src_id: int) -> list[str] | None:
        """The lines of an embedded source (None without sourcesContent), split once per map:
        symbolic's SourceView crosses into Rust for every line and every len()."""
        lines = self._lines.get(src_id, False)
        if lines is False:
            text = self.view.get_source_contents(src_id)
            lines = None if text is None else text.split("\n")
            self._lines[src_id] = lines
        return lines  # type: ignore[return-value]

    def minified_scopes(self, minified: bytes) -> SourceMapCache:
        """symbolic's SourceMapCache over the minified file (scope names from its AST)."""
        if len(minified) > MAX_MINIFIED_BYTES:
            raise SourceMapTooLarge(f"minified file is over {MAX_MINIFIED_BYTES} bytes")
        key = hashlib.sha256(minified).hexdigest()
        with self._lock:
            cache = self._caches.get(key)
        if cache is not None:
            return cache
        try:
            cache = SourceMapCache.from_bytes(minified, self.raw)
        except SymbolicError as exc:  # symbolic raises its "Unknown" error here
            raise CorruptSourceMap(f"cannot index the minified file: {exc}") from None
        with self._lock:
            self._caches = {key: cache}  # one bundle per map in practice
        return cache


@dataclass(frozen=True, slots=True)
class Original:
    """A position in the original source; line and column 1-based like browser stacks."""

    file: str | None  # cleaned path: "src/cart.js", "node_modules/lodash-es/map.js"
    line: int
    column: int
    src_id: int | None  # index into the map's sources (names can repeat)
    token_name: str | None  # the map's `names` entry here (the callee at a call site)
    in_app: bool
    context_line: str | None = None
    pre_context: tuple[str, ...] = ()
    post_context: tuple[str, ...] = ()


# --- loading ---------------------------------------------------------------------------------

_BOM = b"\xef\xbb\xbf"


def _strip_prefixes(data: bytes) -> bytes:
    if data.startswith(_BOM):
        data = data[3:]  # symbolic rejects a BOM
    stripped = data.lstrip()
    if stripped.startswith(b")]}"):  # the v3 spec's anti-XSSI first line
        newline = stripped.find(b"\n")
        return stripped[newline + 1 :] if newline != -1 else b""
    return data


def _parse_json(data: bytes) -> dict[str, Any]:
    head = data.lstrip()[:1]
    if head != b"{":
        what = "is HTML" if head == b"<" else "is empty" if not head else f"starts with {head!r}"
        raise NotASourceMap(f"not a source map: the content {what}, expected a JSON object")
    try:
        obj = json.loads(data)
    except UnicodeDecodeError as exc:
        raise CorruptSourceMap(f"source map is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        if not data.rstrip().endswith(b"}"):
            raise CorruptSourceMap(
                f"source map JSON is truncated (it ends at byte {len(data)}: {exc.msg})"
            ) from None
        raise CorruptSourceMap(
            f"source map is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(obj, dict):
        raise NotASourceMap("not a source map: the JSON is not an object")
    return obj


def _check_shape(obj: dict[str, Any], where: str = "source map") -> None:
    if "mappings" not in obj and "sections" not in obj:
        keys = ", ".join(sorted(str(k) for k in obj)[:6])
        raise NotASourceMap(f"not a source map: a JSON object without 'mappings' (keys: {keys})")
    if obj.get("version") != 3:
        raise NotASourceMap(f"unsupported {where} version {obj.get('version')!r} (only 3)")
    if "sections" in obj:
        sections = obj["sections"]
        if not isinstance(sections, list):
            raise CorruptSourceMap("indexed source map: 'sections' is not a list")
        for i, sec in enumerate(sections):
            if not isinstance(sec, dict) or not isinstance(sec.get("map"), dict):
                raise CorruptSourceMap(f"indexed source map: section {i} has no inline map")
            _check_shape(sec["map"], f"section {i}")
        return
    if not isinstance(obj.get("mappings"), str):
        raise NotASourceMap("not a source map: 'mappings' is not a string")
    if not isinstance(obj.get("sources"), list):
        raise NotASourceMap("not a source map: 'sources' is missing or not a list")
    contents = obj.get("sourcesContent")
    if contents is not None and not isinstance(contents, list):
        raise CorruptSourceMap("'sourcesContent' is not a list")


def _info(obj: dict[str, Any], original: bytes) -> MapInfo:
    sections = obj.get("sections")
    maps = [s["map"] for s in sections] if isinstance(sections, list) else [obj]
    count = with_content = 0
    ignore: set[int] = set()
    for m in maps:
        base = count
        count += len(m.get("sources") or [])
        with_content += sum(1 for c in (m.get("sourcesContent") or []) if isinstance(c, str))
        listed = m.get("ignoreList", m.get("x_google_ignoreList")) or []
        ignore.update(base + i for i in listed if isinstance(i, int))
    file = obj.get("file")
    root = obj.get("sourceRoot")
    debug_id = None
    for key in ("debugId", "debug_id"):  # spec and rollup/webpack; legacy sentry-cli 2
        if isinstance(obj.get(key), str):
            debug_id = normalize_debug_id(obj[key])
            break
    return MapInfo(
        digest=hashlib.sha256(original).hexdigest(),
        size=len(original),
        debug_id=debug_id,
        file=file if isinstance(file, str) and file else None,
        source_root=root if isinstance(root, str) and root else None,
        sources=count,
        sources_with_content=with_content,
        ignore_list=frozenset(ignore),
    )


def load_map(data: bytes, *, max_bytes: int = MAX_MAP_BYTES) -> LoadedMap:
    """Validate and parse a source map (SourceMapError subclasses on bad input)."""
    if len(data) > max_bytes:
        raise SourceMapTooLarge(f"source map is {len(data)} bytes (the limit is {max_bytes})")
    clean = _strip_prefixes(bytes(data))
    obj = _parse_json(clean)
    _check_shape(obj)
    try:
        view = SourceMapView.from_json_bytes(clean)
    except SymbolicError as exc:
        raise CorruptSourceMap(f"corrupt source map: {exc}") from None
    info = _info(obj, bytes(data))
    lines = obj.get("mappings", "").count(";") if isinstance(obj.get("mappings"), str) else 0
    if len(view) == 0 and lines > 1:
        raise CorruptSourceMap("source map has no usable mappings")
    return LoadedMap(info=info, raw=clean, view=view)


# --- positions -------------------------------------------------------------------------------

_WEBPACK_NS = re.compile(r"\Awebpack(?:-internal)?://[A-Za-z0-9_\-@.]*/(?:\./)?")
_TURBOPACK = re.compile(r"\Aturbopack://(?:/\[project\]/)?")
_SCHEME_HOST = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://[^/]*")


def clean_source_path(source: str | None, source_root: str | None = None) -> str | None:
    """A stable path for a map's source: `../../src/cart.js` and `webpack://app/./src/cart.js`
    both become `src/cart.js`; `webpack:///./~/lodash/map.js` becomes
    `node_modules/lodash/map.js`; pnpm's `.pnpm/x@1/node_modules/x` keeps `node_modules/x`."""
    if not source:
        return None
    s = source
    if source_root and s.startswith(source_root) and "://" in s[len(source_root) :]:
        s = s[len(source_root) :]  # symbolic joins sourceRoot by plain concatenation
    s = s.split("?", 1)[0].split("#", 1)[0]
    s = _WEBPACK_NS.sub("", s)
    s = _TURBOPACK.sub("", s)
    s = _SCHEME_HOST.sub("", s).replace("\\", "/").replace("/~/", "/node_modules/")
    if s.startswith("~/"):
        s = "node_modules/" + s[2:]
    parts: list[str] = []
    for seg in s.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    if "node_modules" in parts:
        parts = parts[len(parts) - 1 - parts[::-1].index("node_modules") :]
    return "/".join(parts) or None


def _clip(line: str) -> str:
    line = line.rstrip("\r\n")
    return line if len(line) <= MAX_CONTEXT_CHARS else line[:MAX_CONTEXT_CHARS] + "…"


def valid_position(line: int | None, column: int | None) -> tuple[int, int] | None:
    """(line, column) both 1-based and in range, or None; a missing column means 1."""
    if not isinstance(line, int) or not 1 <= line <= 0xFFFFFFFE:
        return None
    if column is None:
        return line, 1  # old Safari prints no column: take the line's first mapping
    if not isinstance(column, int) or not 1 <= column <= 0xFFFFFFFE:
        return None
    return line, column


def original_position(
    handle: LoadedMap, line: int, column: int, *, context_lines: int = CONTEXT_LINES
) -> Original | None:
    """Map a 1-based position in the minified file to the original source (None: unmapped)."""
    token = handle.view.lookup(line - 1, column - 1)
    # rust-sourcemap falls back to the last token of an EARLIER line: not a match here.
    if token is None or token.dst_line != line - 1:
        return None
    src_id = token.src_id
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    current: str | None = None
    if src_id is not None and context_lines >= 0:
        source_view = handle.source_lines(src_id)  # None without sourcesContent
        if source_view is not None and token.src_line < len(source_view):
            row = token.src_line
            lo = max(0, row - context_lines)
            before = tuple(_clip(s) for s in source_view[lo:row])
            current = _clip(source_view[row])
            after = tuple(_clip(s) for s in source_view[row + 1 : row + 1 + context_lines])
    path = clean_source_path(token.src, handle.info.source_root)
    in_app = src_id not in handle.info.ignore_list and "node_modules" not in (path or "")
    return Original(
        file=path,
        line=token.src_line + 1,
        column=token.src_col + 1,
        src_id=src_id,
        token_name=token.name or None,
        in_app=in_app,
        context_line=current,
        pre_context=before,
        post_context=after,
    )


def minified_scope_name(handle: LoadedMap, minified: bytes, line: int, column: int) -> str | None:
    """The original name of the function around a minified position, from the minified AST."""
    token = handle.minified_scopes(minified).lookup(line, column, 0)
    name = token.function_name if token is not None else None
    return None if name in (None, "<anonymous>", "<unknown>") else name


def sources_content(handle: LoadedMap) -> list[tuple[int, str, str]]:
    """(index, source name, text) of every source whose content the map embeds."""
    out: list[tuple[int, str, str]] = []
    for index in range(handle.view.source_count):
        text = handle.view.get_source_contents(index)
        if text is not None:
            out.append((index, handle.view.get_source_name(index) or "", text))
    return out


# --- debug IDs and references in bundles -----------------------------------------------------

_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_JS_DEBUG_ID = re.compile(rb"^\s*//[#@]\s*debugId\s*=\s*(" + _UUID.encode() + rb")\s*$", re.M)
_JS_RUNTIME_ID = re.compile(
    rb"_sentryDebugIds\[[^\]]{1,200}\]\s*=\s*[\"'](" + _UUID.encode() + rb")[\"']"
)
_MAP_DEBUG_ID = re.compile(rb'(?<!\\)"debug(?:Id|_id)"\s*:\s*"(' + _UUID.encode() + rb')"')
_TAIL = 64 * 1024  # the comments live at the end of a bundle
_SOURCE_MAPPING_URL = re.compile(
    rb"\s*(?://[#@]|/\*[#@])\s*sourceMappingURL\s*=\s*(\S+?)\s*(?:\*/)?\s*"
)


def normalize_debug_id(value: str) -> str | None:
    """A debug ID in its canonical form (lower-case hyphenated UUID), or None if not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


def debug_id_of(data: bytes) -> str | None:
    """The debug ID of a bundle (`//# debugId=` comment, else Sentry's runtime snippet) or of a
    map (`"debugId"` / `"debug_id"`), or None."""
    if _strip_prefixes(data[:4096]).lstrip()[:1] == b"{":
        for key in (b'"debugId"', b'"debug_id"'):
            start = data.find(key)
            while start != -1:  # find() then match: far faster than a regex over 20 MB
                m = _MAP_DEBUG_ID.match(data, start)
                if m:
                    return normalize_debug_id(m.group(1).decode())
                start = data.find(key, start + 1)
        return None
    found = _JS_DEBUG_ID.findall(data[-_TAIL:])
    if found:
        return normalize_debug_id(found[-1].decode())
    m = _JS_RUNTIME_ID.search(data[:_TAIL]) or _JS_RUNTIME_ID.search(data[-_TAIL:])
    return normalize_debug_id(m.group(1).decode()) if m else None


def source_mapping_url_of(js: bytes) -> str | None:
    """The last `//# sourceMappingURL=` of a bundle (rfind: inline maps can be any size)."""
    end = len(js)
    while True:
        at = js.rfind(b"sourceMappingURL", 0, end)
        if at == -1:
            return None
        start = js.rfind(b"\n", 0, at) + 1
        stop = js.find(b"\n", at)
        m = _SOURCE_MAPPING_URL.fullmatch(js[start : stop if stop != -1 else len(js)])
        if m is not None:
            return m.group(1).decode("utf-8", "replace")
        end = at


def inline_map_of(js: bytes, *, max_bytes: int = MAX_MAP_BYTES) -> bytes | None:
    """The map of a `sourceMappingURL=data:application/json;base64,...` bundle, else None."""
    url = source_mapping_url_of(js)
    if url is None or not url.startswith("data:"):
        return None
    meta, sep, payload = url[5:].partition(",")
    if not sep:
        raise CorruptSourceMap("inline source map: the data: URL has no payload")
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise SourceMapTooLarge(f"inline source map is over {max_bytes} bytes")
    if meta.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise CorruptSourceMap("inline source map: invalid base64") from None
    return unquote_to_bytes(payload)


def check_pair(js: bytes, handle: LoadedMap, *, sample: int = 2000) -> list[str]:
    """Raise MapMismatch when the map surely is not the one of `js`; return warnings.

    Differing debug IDs are sure; mappings on lines the file does not have are sure; more than
    2% of sampled mappings past the end of their line is strong (real maps: ~0.1%, another
    bundle's map: 4-18% measured). Only debug IDs pair a map with its bundle for certain.
    """
    js_id = debug_id_of(js)
    map_id = handle.info.debug_id
    if js_id and map_id:
        if js_id != map_id:
            raise MapMismatch(f"the map's debug ID {map_id} is not the file's ({js_id})")
        return []
    lines = js.decode("utf-8", "replace").split("\n")
    count = len(handle.view)
    if count == 0:
        return []
    last = handle.view[count - 1]  # tokens are sorted: the last one has the highest line
    if last.dst_line >= len(lines):
        raise MapMismatch(
            f"the map has mappings on line {last.dst_line + 1}, but the file has {len(lines)}"
        )
    step = max(1, count // sample)
    past_end = checked = 0
    for index in range(0, count, step):
        token = handle.view[index]
        checked += 1
        line = lines[token.dst_line]
        # Columns count UTF-16 units; Python counts code points (fewer only past astral chars).
        if token.dst_col > len(line) and (
            line.isascii() or token.dst_col > len(line.encode("utf-16-le")) // 2
        ):
            past_end += 1
    if past_end > max(2, checked // 50):
        raise MapMismatch(
            f"{past_end} of {checked} sampled mappings point past the end of their line: "
            "this map belongs to another file"
        )
    if past_end:
        return [f"{past_end} of {checked} sampled mappings point past the end of their line"]
    return []
