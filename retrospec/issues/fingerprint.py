"""Group front-end failures: one stable fingerprint plus display info per failure (pure functions).

Precedence: an explicit SDK fingerprint, else the stack (exception type + normalised message +
top 5 in-app frames), else exception type + normalised message. Network failures group by
method, host, templated path and status class. Keys never hold line or column numbers, query
strings, frame origins or bundle content hashes, so one bug from two deploys (or from Chrome,
Firefox and Safari) gets one hash, while the message keeps `reading 'x'` apart from `'y'`.

Message canonicalisation (so cross-browser wordings of one failure match):
- property access on undefined/null -> "cannot access property 'x' of undefined" from V8
  ("Cannot read/set properties of undefined (reading 'x')", old "Cannot read property 'x' of
  undefined", "Cannot destructure property 'x' of ..."), Firefox ("can't access property "x",
  o is undefined") and Safari ("undefined is not an object (evaluating 'o.x')": last member).
  Firefox < 72 says only "o is undefined" (no property name): left as is, it cannot match.
- "t.map is not a function" -> "map is not a function" (receivers are often minified locals);
  a bare 1-2 character callee becomes "<min>" ("e is not a function"); same for "is not a
  constructor" / "is not iterable"; Safari's "(In '...')" suffix is dropped.
- Safari "Can't find variable: x" -> "x is not defined"; "Failed to fetch" / "NetworkError when
  attempting to fetch resource." / "Load failed" -> "network request failed"; "too much
  recursion" -> "maximum call stack size exceeded" (and Firefox's InternalError is treated as
  RangeError); every engine's JSON.parse failure -> "invalid json".
Then URLs, e-mails, UUIDs, IPs, hex and numbers become placeholders, whitespace collapses and
the result is capped at 300 characters. Titles keep the original wording (capped at 200).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from retrospec.issues.stackframes import Frame, parse_stack, split_url, template_segment

__all__ = [
    "FailureInput",
    "Fingerprint",
    "Frame",
    "fingerprint",
    "normalize_message",
    "parse_stack",
    "path_template",
]

MAX_HASHED_FRAMES = 5
MAX_MESSAGE_CHARS = 300
MAX_TITLE_CHARS = 200
MAX_KEPT_FRAMES = 50
# Only this much of a message is examined (messages may be 16 KiB); keeps regex cost bounded.
_SCAN_CHARS = 2000

# Which kinds share clusters: an uncaught error, the same error as an unhandled rejection and
# one passed to captureException are the same bug; console output and HTTP failures are not.
_FAMILY = {"error": "error", "unhandledrejection": "error", "custom": "error", "console": "console"}
_DEFAULT_PARTS = frozenset({"{{ default }}", "{{default}}"})  # Sentry's "extend the default"

_TYPE_PREFIX = re.compile(r"([A-Z][\w$]*(?:Error|Exception)|Error): (.*)", re.S)

# Placeholders, applied in this order (URLs and e-mails contain numbers, UUIDs contain hex).
# Starts are anchored (\b, a lookbehind) and runs bounded, so a long run of word characters in a
# message costs linear time: failure messages come from anyone holding an ingest key.
_PLACEHOLDERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:[a-z][a-z0-9+.-]{0,31}://|www\.)[^\s'\"<>()\[\]{}`]+", re.I), "<url>"),
    (
        re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+"),
        "<email>",
    ),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"), "<ip>"),
    (
        re.compile(
            r"(?<![\w:])(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}"
            r"|(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?)"
            r"(?![\w:])",
            re.I,
        ),
        "<ip>",
    ),
    (
        re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I),
        "<hex>",
    ),
    # Digits glued to letters before them ("h1", "utf8", "es2015") are names, not values.
    (re.compile(r"(?<![\w$])\d+(?:\.\d+)*"), "<num>"),
)

# Engine messages that mean the same thing in Chrome (V8), Firefox and Safari.
_EXACT: dict[str, str] = {
    "Failed to fetch": "network request failed",
    "NetworkError when attempting to fetch resource.": "network request failed",
    "Load failed": "network request failed",
    "Maximum call stack size exceeded": "maximum call stack size exceeded",
    "Maximum call stack size exceeded.": "maximum call stack size exceeded",
    "too much recursion": "maximum call stack size exceeded",
    "ResizeObserver loop limit exceeded": "resizeobserver loop",
    "ResizeObserver loop completed with undelivered notifications.": "resizeobserver loop",
}
_ACCESS = "cannot access property '{}' of {}"
_V8_READ = re.compile(
    r"Cannot (?:read|set) properties of (undefined|null) \((?:reading|setting) '(.*)'\)"
)
_V8_READ_OLD = re.compile(r"Cannot (?:read|set) property '(.*)' of (undefined|null)")
_V8_DESTRUCTURE = re.compile(
    r"Cannot destructure property '(.*?)' of .* as it is (undefined|null)\.?"
)
_FF_ACCESS = re.compile(r"can't access property \"?(.*?)\"?(?:, .+ is| of) (undefined|null)")
_SAFARI_ACCESS = re.compile(r"'?(undefined|null)'? is not an object \(evaluating '(.*)'\)")
_SAFARI_PROP = re.compile(r"""(?:\.\s*(#?[\w$]+)|\[\s*(['"])(.*?)\2\s*\]|\[\s*(\d+)\s*\])$""")
_NOT_A = re.compile(r"(.+?) is not (a function|a constructor|iterable)\b.*")
_IDENT_ONLY = re.compile(r"#?[\w$]+")
_LAST_MEMBER = re.compile(r"\.\s*(#?[\w$]+)\)*$")
_SAFARI_REF = re.compile(r"Can't find variable: ([\w$]+)")
_JSON = re.compile(
    r"(?=.*?(?:is not valid JSON|JSON\.parse:|JSON Parse error:|of JSON input|in JSON at)).*"
)
_FF_CONST = re.compile(r"invalid assignment to const ['\"]?[\w$]+['\"]?")


def _safari_access(m: re.Match[str]) -> str | None:
    expr = m[2].split(" = ", 1)[0].strip()  # "o.x = 1" assigns to o.x
    prop = _SAFARI_PROP.search(expr)
    if prop is None:
        return None
    return _ACCESS.format(prop[1] or prop[3] or prop[4], m[1])


def _not_a(m: re.Match[str]) -> str | None:
    callee = m[1].strip()
    if callee.startswith("object "):
        callee = callee[7:]  # V8: "object null is not iterable (...)"
    if _IDENT_ONLY.fullmatch(callee):
        # Like frame names, bare 1-2 character identifiers are minifier output that changes per
        # deploy ("e is not a function" vs "t is not a function"); `$` and `_` are real globals.
        if len(callee) <= 2 and callee not in ("$", "_"):
            callee = "<min>"
        return f"{callee} is not {m[2]}"
    # The receiver ("t.map", "(0 , _api.load)") is often a minified local: keep the member.
    member = _LAST_MEMBER.search(callee)
    return None if member is None else f"{member[1]} is not {m[2]}"


_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str | None]], ...] = (
    ("properties of", _V8_READ, lambda m: _ACCESS.format(m[2], m[1])),
    ("property '", _V8_READ_OLD, lambda m: _ACCESS.format(m[1], m[2])),
    ("Cannot destructure", _V8_DESTRUCTURE, lambda m: _ACCESS.format(m[1], m[2])),
    ("can't access property", _FF_ACCESS, lambda m: _ACCESS.format(m[1], m[2])),
    ("is not an object", _SAFARI_ACCESS, _safari_access),
    (" is not ", _NOT_A, _not_a),
    ("Can't find variable", _SAFARI_REF, lambda m: f"{m[1]} is not defined"),
    ("to const", _FF_CONST, lambda m: "assignment to constant variable"),
    ("JSON", _JSON, lambda m: "invalid json"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FailureInput:
    """One captured failure as the fingerprinter sees it."""

    kind: str  # error | unhandledrejection | network | console | custom
    type: str | None = None  # exception type e.g. "TypeError"
    message: str | None = None
    stack: str | None = None
    page_url: str | None = None
    method: str | None = None  # network only
    request_url: str | None = None  # network only
    status: int | None = None  # network only
    explicit: tuple[str, ...] | None = None  # SDK-supplied fingerprint parts
    # Frames already parsed (and possibly symbolicated); when set, `stack` is not parsed again.
    frames: tuple[Frame, ...] | None = None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The grouping result: hash of `key`, plus what to show for the cluster."""

    hash: str  # hex sha256 prefix (32 chars) of the grouping key
    basis: str  # "explicit" | "stack" | "message" | "network"
    title: str
    culprit: str | None
    frames: tuple[Frame, ...]  # the normalised frames kept (in-app preferred), top first
    key: str  # the human-readable grouping key that was hashed (for debugging)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _strip_uncaught(text: str) -> str:
    # window.onerror's message carries Chrome's console prefixes; Error.message does not.
    if text.startswith("Uncaught "):
        text = text[9:]
    if text.startswith("(in promise) "):
        text = text[13:]
    return text


def _canonical(text: str) -> str:
    """Map well-known engine wordings to one cross-browser form (see module docs)."""
    exact = _EXACT.get(text)
    if exact is not None:
        return exact
    if text.startswith("Assignment to constant variable"):
        return "assignment to constant variable"
    for needle, pattern, build in _RULES:
        if needle in text:
            m = pattern.fullmatch(text)
            if m is not None:
                out = build(m)
                if out is not None:
                    return out
    return text


def normalize_message(message: str | None) -> str:
    """Grouping form of a message: canonical engine wording, placeholders, collapsed, capped."""
    if not message:
        return ""
    # Repeated messages hit the cache; long ones bypass it so its memory stays bounded.
    return _normalize_cached(message) if len(message) <= 512 else _normalize(message[:_SCAN_CHARS])


def _normalize(message: str) -> str:
    text = _strip_uncaught(_collapse(message))
    prefix = ""
    m = _TYPE_PREFIX.fullmatch(text)
    if m is not None:
        prefix, text = f"{m[1]}: ", m[2]
    text = prefix + _canonical(text)
    for pattern, placeholder in _PLACEHOLDERS:
        text = pattern.sub(placeholder, text)
    return text[:MAX_MESSAGE_CHARS]


_normalize_cached = lru_cache(maxsize=4096)(_normalize)


def path_template(url: str) -> tuple[str, str]:
    """Split a request URL into (host, path template) with ids replaced and the query dropped."""
    host, path = split_url(url)
    segments = [template_segment(seg) for seg in path.split("/") if seg]
    return host, "/" + "/".join(segments)


def _status_class(status: int | None) -> str:
    if status is None or status <= 0:
        return "network-error"
    if 100 <= status <= 599:
        return f"{status // 100}xx"
    return "invalid-status"


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hash(key: str) -> str:
    # Client strings may hold lone surrogates; surrogatepass keeps hashing total and stable.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _split_type(type_: str | None, message: str | None, stack: str | None) -> tuple[str, str]:
    """Return (type, display message): strips "Uncaught", repeated type prefixes, infers type."""
    type_ = (type_ or "").strip()
    text = _collapse(message[:_SCAN_CHARS]) if message else ""
    if not text and stack:
        # Without a message, Chrome's stack still starts with "TypeError: message".
        first = stack.lstrip().partition("\n")[0][:_SCAN_CHARS]
        if not parse_stack(first):
            text = _collapse(first)
    text = _strip_uncaught(text)
    m = _TYPE_PREFIX.fullmatch(text)
    if m is not None and (not type_ or m[1] == type_):
        type_, text = m[1], m[2]
    return type_, text


def _culprit(frame: Frame) -> str | None:
    if frame.function and frame.path:
        return f"{frame.function} ({frame.path})"
    return frame.path or frame.function


def _network(failure: FailureInput, request_url: str) -> Fingerprint:
    method = (failure.method or "").strip().upper() or "GET"  # fetch's and XHR's default
    host, path = path_template(request_url)
    if not host and failure.page_url:
        host = split_url(failure.page_url)[0]  # relative request: same origin as the page
    status = _status_class(failure.status)
    key = "\n".join(("network", method, host, path, status))
    title = _cap(f"{method} {host}{path} → {status}", MAX_TITLE_CHARS)
    return Fingerprint(_hash(key), "network", title, f"{method} {path}", (), key)


def _error_like(failure: FailureInput, kind: str) -> Fingerprint:
    family = _FAMILY.get(kind, kind or "error")
    type_, text = _split_type(failure.type, failure.message, failure.stack)
    normalized = normalize_message(text)
    if type_ == "InternalError" and normalized == "maximum call stack size exceeded":
        type_ = "RangeError"  # Firefox's name for V8's and Safari's RangeError here
    if type_ and text:
        title = f"{type_}: {text}"
    else:
        title = type_ or text or f"({kind or 'error'} without message)"
    title = _cap(title, MAX_TITLE_CHARS)
    if failure.frames is not None:
        frames = list(failure.frames)
    else:
        frames = parse_stack(failure.stack, page_url=failure.page_url) if failure.stack else []
    # Prefer in-app frames; if the whole stack is vendor code, that still beats no stack.
    kept = [f for f in frames if f.in_app] or frames
    if not kept:
        key = "\n".join(("message", family, type_, normalized))
        return Fingerprint(_hash(key), "message", title, None, (), key)
    lines = [f"{f.function or '?'} {f.path or '?'}" for f in kept[:MAX_HASHED_FRAMES]]
    key = "\n".join(("stack", family, type_, normalized, *lines))
    kept_frames = tuple(kept[:MAX_KEPT_FRAMES])
    return Fingerprint(_hash(key), "stack", title, _culprit(kept[0]), kept_frames, key)


def fingerprint(failure: FailureInput) -> Fingerprint:
    """Compute the grouping fingerprint and display info for one failure."""
    kind = (failure.kind or "").strip().lower()
    if kind == "network" and failure.request_url:
        default = _network(failure, failure.request_url)
    else:
        default = _error_like(failure, kind)
    parts = [p.strip() for p in failure.explicit or ()]
    if not any(parts):
        return default
    # Explicit parts replace the default key; "{{ default }}" splices the default key back in.
    escaped = (
        default.key if p in _DEFAULT_PARTS else p.replace("\\", "\\\\").replace("\n", "\\n")
        for p in parts
    )
    key = "\n".join(("explicit", *escaped))
    return Fingerprint(_hash(key), "explicit", default.title, default.culprit, default.frames, key)
