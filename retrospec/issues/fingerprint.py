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
from dataclasses import dataclass

from retrospec.issues.messages import (
    SCAN_CHARS,
    TYPE_PREFIX,
    collapse,
    normalize_message,
    strip_uncaught,
)
from retrospec.issues.stackframes import Frame, parse_stack, split_url, template_segment

__all__ = [
    "FailureInput",
    "Fingerprint",
    "Frame",
    "fingerprint",
    "parse_stack",
    "path_template",
]

MAX_HASHED_FRAMES = 5
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
