"""Grouping version 1, frozen: the keys of clusters created before version 2.

An issue promoted under version 1 keeps its id and its key. While such issues exist the cluster
job computes each new failure's version-1 hash beside the current one, so the failures that
used to reach an old issue still do (issues/clustering.py; README "Grouping"). So this module
must keep producing exactly the hashes version 1 produced: never change its rules (a golden
test, tests/test_grouping_v1.py, pins them). New rules go into issues/fingerprint.py under a
new GROUPING_VERSION.

Version 1: stack key = family, exception type, normalised message and the top 5 in-app frames
(function name or "?", file path with hex/base64 content hashes removed from the file name and
versioned directories templated); message key = family, type, normalised message; network key =
method, host, path template, status class; explicit parts replace the key ("{{ default }}"
splices the default key back in).
"""

from __future__ import annotations

import hashlib
import re

from retrospec.issues.fingerprint import FailureInput
from retrospec.issues.messages import (
    SCAN_CHARS,
    TYPE_PREFIX,
    collapse,
    normalize_message,
    strip_uncaught,
)
from retrospec.issues.stackframes import (
    Frame,
    is_cross_site_cdn,
    is_vendor,
    parse_stack,
    split_url,
    template_segment,
)

VERSION = 1
_MAX_HASHED_FRAMES = 5
_FAMILY = {"error": "error", "unhandledrejection": "error", "custom": "error", "console": "console"}
_DEFAULT_PARTS = frozenset({"{{ default }}", "{{default}}"})

_HEX = re.compile(r"[0-9a-fA-F]+")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_VERSION_DIR = re.compile(r"v?\d+(?:\.\d+)+")
_TRAILING_HEX = re.compile(r"[-_~]([0-9A-Fa-f]{6,})$")


def _has_digit(s: str) -> bool:
    return any(c.isdigit() for c in s)


def _looks_like_b64_hash(tok: str) -> bool:
    if not _B64.fullmatch(tok) or tok.isdigit():
        return False
    digits = sum(c.isdigit() for c in tok)
    inner_upper = sum(c.isupper() for c in tok[1:])
    has_lower = any(c.islower() for c in tok)
    if digits:
        return (inner_upper > 0 and has_lower) or digits >= 2 or "-" in tok or "_" in tok
    return (inner_upper >= 2 and has_lower) or tok.isupper()


def _is_content_hash_token(tok: str) -> bool:
    n = len(tok)
    if n < 6:
        return False
    if _HEX.fullmatch(tok):
        return _has_digit(tok) or n >= 12
    if (n == 8 or n >= 12) and "-" not in tok and "_" not in tok:
        return _looks_like_b64_hash(tok)
    return False


def _strip_trailing_hash(tok: str) -> str:
    m = _TRAILING_HEX.search(tok)
    if m is not None and m.start() > 0 and _has_digit(m.group(1)):
        return tok[: m.start()]
    if len(tok) > 9 and tok[-9] in "-_~" and _looks_like_b64_hash(tok[-8:]):
        return tok[:-9]
    return tok


def _strip_content_hash(name: str) -> str:
    if "." not in name:
        return template_segment(name)
    *body, ext = name.split(".")
    kept = [_strip_trailing_hash(tok) for tok in body if not _is_content_hash_token(tok)]
    return ".".join([*(kept or [":hash"]), ext])


def _template_dir(seg: str) -> str:
    templated = template_segment(seg)
    if templated == seg and _VERSION_DIR.fullmatch(seg):
        return ":ver"
    return templated


def _file(file: str) -> tuple[str, str]:
    """(host, version-1 path) of a frame's file URL."""
    if file.startswith("blob:"):
        file = file[5:].replace("%3A", ":").replace("%3a", ":")
    host, path = split_url(file)
    segments = path.split("/")
    last = len(segments) - 1
    path = "/".join(
        _strip_content_hash(seg) if i == last else _template_dir(seg)
        for i, seg in enumerate(segments)
        if seg != "." or i == last
    )
    return host, path


def _frames(failure: FailureInput) -> list[tuple[str | None, str | None, bool]]:
    """(function, version-1 path, in_app) per frame, top first, repeats collapsed."""
    raw: list[Frame]
    if failure.stack:
        raw = parse_stack(failure.stack, collapse=False)
    else:
        raw = list(failure.frames or ())
    page_host = split_url(failure.page_url)[0] if failure.page_url else ""
    out: list[tuple[str | None, str | None, bool]] = []
    prev: tuple[str | None, str | None] | None = None
    for f in raw:
        if f.raw_file is None or f.mapped:
            path, in_app = f.path, f.in_app
        else:
            host, path = _file(f.raw_file)
            in_app = not is_vendor(host, path) and not (
                page_host and is_cross_site_cdn(host, page_host)
            )
        ident = (f.function, path or None)
        if ident == prev:
            continue
        prev = ident
        out.append((f.function, path or None, in_app))
    return out


def _split_type(type_: str | None, message: str | None, stack: str | None) -> tuple[str, str]:
    type_ = (type_ or "").strip()
    text = collapse(message[:SCAN_CHARS]) if message else ""
    if not text and stack:
        first = stack.lstrip().partition("\n")[0][:SCAN_CHARS]
        if not parse_stack(first):
            text = collapse(first)
    text = strip_uncaught(text)
    m = TYPE_PREFIX.fullmatch(text)
    if m is not None and (not type_ or m[1] == type_):
        type_, text = m[1], m[2]
    return type_, text


def _status_class(status: int | None) -> str:
    if status is None or status <= 0:
        return "network-error"
    if 100 <= status <= 599:
        return f"{status // 100}xx"
    return "invalid-status"


def _default_key(failure: FailureInput, kind: str) -> str:
    if kind == "network" and failure.request_url:
        method = (failure.method or "").strip().upper() or "GET"
        host, path = split_url(failure.request_url)
        path = "/" + "/".join(template_segment(seg) for seg in path.split("/") if seg)
        if not host and failure.page_url:
            host = split_url(failure.page_url)[0]
        return "\n".join(("network", method, host, path, _status_class(failure.status)))
    family = _FAMILY.get(kind, kind or "error")
    type_, text = _split_type(failure.type, failure.message, failure.stack)
    normalized = normalize_message(text)
    if type_ == "InternalError" and normalized == "maximum call stack size exceeded":
        type_ = "RangeError"
    frames = _frames(failure) if (failure.stack or failure.frames) else []
    kept = [f for f in frames if f[2]] or frames
    if not kept:
        return "\n".join(("message", family, type_, normalized))
    lines = [f"{fn or '?'} {path or '?'}" for fn, path, _ in kept[:_MAX_HASHED_FRAMES]]
    return "\n".join(("stack", family, type_, normalized, *lines))


def fingerprint_hash(failure: FailureInput) -> str:
    """The version-1 fingerprint hash of a failure (what a version-1 cluster is keyed by)."""
    kind = (failure.kind or "").strip().lower()
    key = _default_key(failure, kind)
    parts = [p.strip() for p in failure.explicit or ()]
    if any(parts):
        escaped = (
            key if p in _DEFAULT_PARTS else p.replace("\\", "\\\\").replace("\n", "\\n")
            for p in parts
        )
        key = "\n".join(("explicit", *escaped))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
