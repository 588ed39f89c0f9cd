"""Group front-end failures: one stable fingerprint plus display info per failure (pure functions).

Precedence: an explicit SDK fingerprint, else the stack (exception type + normalised message +
top 5 in-app frames), else exception type + normalised message. Network failures group by
method, host, templated path and status class. Keys never hold line or column numbers, query
strings, frame origins or bundle content hashes, so one bug from two deploys (or from Chrome,
Firefox and Safari) gets one hash, while the message keeps `reading 'x'` apart from `'y'`.

Messages are canonicalised and their values replaced by placeholders in issues/messages.py.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from retrospec.issues.messages import (
    SCAN_CHARS,
    TYPE_PREFIX,
    EngineMessage,
    collapse,
    engine_message,
    message_template,
    normalize_message,
    strip_uncaught,
)
from retrospec.issues.stackframes import Frame, parse_stack, split_url, template_segment

__all__ = [
    "GROUPING_VERSION",
    "FailureInput",
    "Fingerprint",
    "Frame",
    "fingerprint",
    "parse_stack",
    "path_template",
]

# The grouping rules' version, stored on every cluster. Raise it when a key changes; the old
# version's keys stay computable (issues/grouping_v1.py) so promoted issues keep their failures.
GROUPING_VERSION = 2
MAX_CONSOLE_SCAN = 16_000
MAX_SOURCE_LINE_CHARS = 200
_ENTRY_NAMES = frozenset({"main", "index", "app", "bundle"})
MAX_TITLE_CHARS = 200
MAX_KEPT_FRAMES = 50

# Which kinds share clusters: an uncaught error, the same error as an unhandled rejection and
# one passed to captureException are the same bug; console output and HTTP failures are not.
_FAMILY = {"error": "error", "unhandledrejection": "error", "custom": "error", "console": "console"}
_DEFAULT_PARTS = frozenset({"{{ default }}", "{{default}}"})  # Sentry's "extend the default"


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
    family: str = "error"  # which failures may share a cluster: error | console | network
    # Without a source map: the hash of the exact position (deployed file, line, column) of an
    # engine error that names a property. One expression failing with different property names
    # (`record[field]`) is one bug; the cluster job learns it from failures that share it.
    position: str | None = None


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
    text = collapse(message[:SCAN_CHARS]) if message else ""
    if not text and stack:
        # Without a message, Chrome's stack still starts with "TypeError: message".
        first = stack.lstrip().partition("\n")[0][:SCAN_CHARS]
        if not parse_stack(first):
            text = collapse(first)
    text = strip_uncaught(text)
    m = TYPE_PREFIX.fullmatch(text)
    if m is not None and (not type_ or m[1] == type_):
        type_, text = m[1], m[2]
    return type_, text


def _culprit(frame: Frame) -> str | None:
    if frame.function and frame.path:
        return f"{frame.function} ({frame.path})"
    return frame.path or frame.function


def _id_segment(seg: str) -> str:
    # Ids of any shape: a segment of 4+ characters mixing letters and digits ("c9zt1dvws",
    # "e1a2", "ord-2024-17") is a value; "v2" and "h5" stay, as do words and templates.
    if seg.startswith(":") or len(seg) < 4:
        return seg
    digits = any(c.isdigit() for c in seg)
    letters = any(c.isalpha() for c in seg)
    return ":id" if digits and letters else seg


def _network(failure: FailureInput, request_url: str) -> Fingerprint:
    method = (failure.method or "").strip().upper() or "GET"  # fetch's and XHR's default
    host, path = path_template(request_url)
    path = "/".join(_id_segment(seg) for seg in path.split("/"))
    if not host and failure.page_url:
        host = split_url(failure.page_url)[0]  # relative request: same origin as the page
    status = _status_class(failure.status)
    key = "\n".join(("network", method, host, path, status))
    title = _cap(f"{method} {host}{path} → {status}", MAX_TITLE_CHARS)
    return Fingerprint(_hash(key), "network", title, f"{method} {path}", (), key, "network")


def _console_error(failure: FailureInput) -> tuple[str, str, str] | None:
    """(type, message, stack) of an error that a framework logged with console.error."""
    message = (failure.message or "")[:MAX_CONSOLE_SCAN]
    head, newline, rest = message.partition("\n")
    if newline and parse_stack(rest):
        # AngularJS's $log (and code like it) formats the error: "TypeError: msg\n    at ...".
        head = strip_uncaught(collapse(head))
        m = TYPE_PREFIX.fullmatch(head)
        return (m[1], m[2], rest) if m is not None else ((failure.type or "Error"), head, rest)
    stack = failure.stack or ""
    if failure.type and stack:
        # An Error object passed to console.error (SDKs before 2 sent it as console output).
        first = collapse(stack.lstrip().partition("\n")[0][:SCAN_CHARS])
        m = TYPE_PREFIX.fullmatch(first)
        if m is not None and m[1] == failure.type:
            return m[1], m[2], stack
    return None


def _site_function(frame: Frame) -> str:
    name = frame.function
    if not name:
        return "?"
    # Minifiers reach 3-character names in big bundles ("Qbe", "t$1"); they change per deploy.
    if (
        not frame.mapped
        and len(name) == 3
        and (
            any(c.isdigit() or c in "$_" for c in name)
            or (any(c.isupper() for c in name) and any(c.islower() for c in name))
        )
    ):
        return "?"
    return name


def _site_path(frame: Frame) -> str:
    if not frame.path:
        return "?"
    if frame.mapped:
        return frame.path  # an original source file: stable across deploys
    # Only the file name: asset directories move between releases ("/assets/v2/",
    # "/static/2.0.0/", "/r/2025.06.2/", Next's build id) and between build set-ups.
    name = frame.path.rpartition("/")[2] or frame.path
    stem, dot, ext = name.rpartition(".")
    # The entry bundle's name is the bundler's convention (webpack and esbuild `main`, Vite and
    # Next `index`, others `app` or `bundle`), not the app's: a new set-up renames it.
    return f"<entry>.{ext}" if dot and stem in _ENTRY_NAMES else name


def _source_line(frame: Frame) -> str | None:
    if not frame.mapped or not frame.context_line:
        return None
    line = collapse(frame.context_line)
    return line if 0 < len(line) <= MAX_SOURCE_LINE_CHARS else None  # longer: generated code


def _names(identifier: str, line: str) -> bool:
    return re.search(rf"(?<![\w$]){re.escape(identifier)}(?![\w$])", line) is not None


def _site_message(text: str, line: str | None, engine: EngineMessage | None) -> str:
    """What of the message goes into a stack key (module docs: version 2); `engine` is
    engine_message(text)."""
    if engine is not None:
        name = engine.identifier
        if name is not None and line is not None and not _names(name, line):
            # The failing line reads a computed key (record[field]): the name is data.
            return "cannot access property <key>"
        return engine.text
    # The failing source line is the site; the message (the user's data) adds nothing.
    return "" if line is not None else message_template(text)


def _error_like(failure: FailureInput, kind: str) -> Fingerprint:
    family = _FAMILY.get(kind, kind or "error")
    stack = failure.stack
    promoted = _console_error(failure) if family == "console" and failure.frames is None else None
    if promoted is not None:
        family = "error"
        type_, text, stack = promoted
        text = collapse(text)
    else:
        type_, text = _split_type(failure.type, failure.message, stack)
    if type_ == "InternalError" and normalize_message(text) == "maximum call stack size exceeded":
        type_ = "RangeError"  # Firefox's name for V8's and Safari's RangeError here
    if type_ and text:
        title = f"{type_}: {text}"
    else:
        title = type_ or text or f"({kind or 'error'} without message)"
    title = _cap(title, MAX_TITLE_CHARS)
    if failure.frames is not None:
        frames = list(failure.frames)
    else:
        frames = parse_stack(stack, page_url=failure.page_url) if stack else []
    # Prefer in-app frames; if the whole stack is vendor code, that still beats no stack.
    kept = [f for f in frames if f.in_app] or frames
    if not kept:
        engine = engine_message(text)
        message = engine.text if engine is not None else message_template(text)
        key = "\n".join(("text", family, type_, message))
        return Fingerprint(_hash(key), "message", title, None, (), key, family)
    top = kept[0]
    line = _source_line(top)
    site = f"{_site_function(top)} {_site_path(top)}"
    # Parsed once, for the key and the position both: parsing it twice and copying the result
    # with dataclasses.replace cost 9.5 us more per failure (measured on all-distinct stacks).
    engine = engine_message(text)
    key = "\n".join(("site", family, type_, _site_message(text, line, engine), site, line or ""))
    kept_frames = tuple(kept[:MAX_KEPT_FRAMES])
    position = _position(top, family, type_, engine) if line is None else None
    return Fingerprint(
        _hash(key), "stack", title, _culprit(top), kept_frames, key, family, position
    )


def _position(top: Frame, family: str, type_: str, engine: EngineMessage | None) -> str | None:
    """The exact code position of an engine error naming a property, in one deployed file."""
    if engine is None or engine.identifier is None or top.mapped or top.column is None:
        return None
    if not top.raw_file or top.line is None:
        return None
    where = top.raw_file.partition("?")[0].partition("#")[0]
    return _hash("\n".join(("position", family, type_, where, f"{top.line}:{top.column}")))


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
    return Fingerprint(
        _hash(key), "explicit", default.title, default.culprit, default.frames, key, default.family
    )
