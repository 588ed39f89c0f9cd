"""A Sentry error event (an `event` item, or a /store/ body) as one RetroSpec failure.

Kinds: `window.onerror` and the SDK's wrapped browser callbacks (`handled: false`) are `error`;
`onunhandledrejection` is `unhandledrejection`; the HttpClient integration's events are `network`;
CaptureConsole's are `console`; `captureException` and `captureMessage` are `custom`.

The stack: the main exception's frames (Sentry lists them outermost first, the crash frame last)
written the way V8 prints a stack, crash frame first, `    at fn (url:line:col)`, so grouping and
source maps treat Sentry events exactly like our SDK's. A synthetic exception (the SDK's stack for
captureMessage or a thrown non-Error) is not the failure's stack: the message groups it.
Breadcrumbs (clicks, inputs, navigations) become rrweb custom events that the replay job turns into
the steps before the failure, for errors that have no replay of their own.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import msgspec

from retrospec.errors import BadRequest
from retrospec.ingest.envelope import STEP_TAG, Failure, FailureKind, SessionMeta, User

# ingest.envelope's field limits: the adapter cuts values to fit them, never fails on length.
SHORT = 256
TEXT = 4096
MESSAGE = 16_384
STACK = 65_536
MAX_FRAMES = 200  # issues.stackframes reads at most this many lines
MAX_TAGS = 64
MAX_DEBUG_IDS = 64
MAX_FINGERPRINT = 16
MAX_STEPS = 50  # newest breadcrumbs that become steps
MAX_CONTEXT_BYTES = 32_768
MAX_CONTEXT_CRUMBS = 30
MAX_MS = 32503680000000  # year 3000, as ingest.envelope.Millis

_HEX32 = re.compile(r"\A[0-9a-f]{32}\Z")
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()
_STEP_CATEGORIES = {"ui.click": "click", "ui.input": "input", "navigation": "navigation"}


@dataclass(frozen=True, slots=True)
class SentryError:
    """One error event, read: the failure, the session facts, and what links it to a replay."""

    event_id: str
    replay_id: str | None  # tags.replayId, else the envelope's trace.replay_id
    trace_id: str | None  # the page load's trace (one per page load in the browser SDK)
    ts: int
    meta: SessionMeta  # id is filled in once the session is chosen
    failure: Failure
    steps: tuple[bytes, ...]  # rrweb custom events (breadcrumbs as steps), oldest first
    size: int  # bytes of the event as sent


def norm_id(value: Any) -> str | None:
    """A Sentry id (UUID, dashes optional) as 32 lower-case hex digits, or None."""
    if not isinstance(value, str):
        return None
    text = value.replace("-", "").strip().lower()
    return text if _HEX32.match(text) else None


def text(value: Any, limit: int) -> str | None:
    """A non-empty string cut to limit characters, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _one_line(value: str | None) -> str | None:
    return " ".join(value.split()) if value else value


def number(value: Any) -> float | None:
    """A finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    n = number(value)
    if n is None and isinstance(value, str) and value.isdecimal() and len(value) <= 9:
        n = float(value)
    return None if n is None or abs(n) > 2**53 else int(n)


def millis(value: Any, default: int) -> int:
    """A Sentry timestamp (seconds since the epoch, or an RFC 3339 string) in epoch ms."""
    seconds = number(value)
    if seconds is None and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return default
        seconds = parsed.timestamp() if parsed.tzinfo else None
    if seconds is None:
        return default
    ms = seconds if seconds > 1e11 else seconds * 1000  # a few SDKs send milliseconds
    return int(min(max(ms, 0), MAX_MS))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def user_agent_of(obj: dict[str, Any]) -> str | None:
    """The User-Agent in a Sentry `request.headers` (a dict, or a list of pairs)."""
    headers = _dict(obj.get("request")).get("headers")
    pairs: list[Any] = list(headers.items()) if isinstance(headers, dict) else _list(headers)
    for pair in pairs:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            name, value = pair
            if isinstance(name, str) and name.lower() == "user-agent":
                return text(value, TEXT)
    return None


def user_of(obj: dict[str, Any]) -> User | None:
    """The event's user (id, email, username), if set."""
    user = _dict(obj.get("user"))
    found = User(
        id=text(user.get("id"), SHORT),
        email=text(user.get("email"), SHORT),
        name=text(user.get("username") or user.get("name"), SHORT),
    )
    return found if found.id or found.email or found.name else None


def sdk_label(obj: dict[str, Any], header: dict[str, Any]) -> str | None:
    """`sentry.javascript.browser/11.12.0` from the event's or the envelope's sdk."""
    sdk = _dict(obj.get("sdk")) or _dict(header.get("sdk"))
    name = text(sdk.get("name"), 120)
    version = text(sdk.get("version"), 60)
    return text(f"{name}/{version}" if name and version else name, SHORT)


def _tags(obj: dict[str, Any]) -> dict[str, str]:
    raw = obj.get("tags")
    pairs: list[Any] = list(raw.items()) if isinstance(raw, dict) else _list(raw)
    tags: dict[str, str] = {}
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            continue
        name, value = text(pair[0], SHORT), text(pair[1], SHORT)
        if name and value is not None and len(tags) < MAX_TAGS:
            tags[name] = value
    return tags


def _message(obj: dict[str, Any]) -> str | None:
    message = obj.get("message")
    if isinstance(message, dict):  # the older interface form
        message = message.get("formatted") or message.get("message")
    if not isinstance(message, str) or not message:
        entry = _dict(obj.get("logentry"))
        message = entry.get("formatted") or entry.get("message")
    return text(message, MESSAGE)


def _exceptions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    raw = obj.get("exception")
    values = raw.get("values") if isinstance(raw, dict) else raw
    return [v for v in _list(values) if isinstance(v, dict)]


def _frame_line(frame: dict[str, Any]) -> str | None:
    # V8's text, which issues.stackframes parses; newlines would start a new line there.
    file = text(frame.get("abs_path") or frame.get("filename"), TEXT)
    fn = text(frame.get("function"), SHORT)
    if not file and not fn:
        return None
    file = _one_line(file) or "<anonymous>"
    line, col = _int(frame.get("lineno")), _int(frame.get("colno"))
    loc = file if line is None else f"{file}:{line}" if col is None else f"{file}:{line}:{col}"
    fn = _one_line(fn)
    return f"    at {fn} ({loc})" if fn and fn != "?" else f"    at {loc}"


def chrome_stack(type_: str | None, value: str | None, frames: list[Any]) -> str | None:
    """A V8-style stack (crash frame first) from Sentry frames (outermost first)."""
    lines = [
        line
        for line in (_frame_line(f) for f in reversed(frames) if isinstance(f, dict))
        if line is not None
    ][:MAX_FRAMES]
    if not lines:
        return None
    head = _one_line(": ".join(p for p in (type_, value) if p)) or "Error"
    stack = "\n".join([head[:TEXT], *lines])
    return stack[:STACK]


def _crash_frame(frames: list[Any]) -> dict[str, Any]:
    for frame in reversed(frames):
        if isinstance(frame, dict) and (frame.get("filename") or frame.get("abs_path")):
            return frame
    return {}


def _kind(obj: dict[str, Any], mechanism: dict[str, Any], is_message: bool) -> FailureKind:
    mtype = str(mechanism.get("type") or "").lower()
    if "unhandledrejection" in mtype:
        return "unhandledrejection"
    if mtype.startswith(("auto.http.client", "http.client", "http_client")):
        return "network"
    if "console" in mtype or obj.get("logger") == "console":
        return "console"
    if is_message:
        return "custom"
    handled = mechanism.get("handled")
    if handled is False or "onerror" in mtype or "global_handlers" in mtype:
        return "error"
    if handled is True or mtype == "generic":
        return "custom"
    return "error"


def _debug_ids(obj: dict[str, Any]) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for image in _list(_dict(obj.get("debug_meta")).get("images")):
        if not isinstance(image, dict) or image.get("type") not in ("sourcemap", None):
            continue
        url, debug_id = text(image.get("code_file"), TEXT), text(image.get("debug_id"), SHORT)
        if url and debug_id and len(found) < MAX_DEBUG_IDS:
            found[url] = debug_id
    return found or None


def _fingerprint(obj: dict[str, Any]) -> list[str] | None:
    parts = [text(p, SHORT) for p in _list(obj.get("fingerprint"))[:MAX_FINGERPRINT]]
    kept = [p for p in parts if p]
    # "{{ default }}" means "the usual grouping, refined": we only take a full replacement.
    if not kept or any(p.replace(" ", "") == "{{default}}" for p in kept):
        return None
    return kept


def _selector_label(selector: str) -> str:
    # "body > form > button#pay.primary" -> "button#pay.primary": the element, not its path.
    return selector.rsplit(" > ", 1)[-1].strip()[:160]


def step_events(crumbs: list[Any], until_ms: int) -> tuple[bytes, ...]:
    """Clicks, inputs and navigations among the breadcrumbs as rrweb custom events (markers)."""
    out: list[bytes] = []
    for crumb in crumbs[-MAX_STEPS * 4 :]:
        if not isinstance(crumb, dict):
            continue
        kind = _STEP_CATEGORIES.get(str(crumb.get("category")))
        ts = millis(crumb.get("timestamp"), -1)
        if kind is None or ts < 0 or ts > until_ms:
            continue
        if kind == "navigation":
            data = _dict(crumb.get("data"))
            to, came = text(data.get("to"), TEXT), text(data.get("from"), TEXT)
            if not to:
                continue
            label = urljoin(came, to) if came and "://" in came else to
        else:
            message = text(crumb.get("message"), TEXT)
            if not message:
                continue
            label = _selector_label(message)
        payload = {"kind": kind, "label": label}
        out.append(
            _ENCODE.encode(
                {"type": 5, "timestamp": ts, "data": {"tag": STEP_TAG, "payload": payload}}
            )
        )
    return tuple(out[-MAX_STEPS:])


def _context(
    obj: dict[str, Any], exceptions: list[dict[str, Any]], mechanism: dict[str, Any]
) -> msgspec.Raw:
    """What else the event said, kept verbatim-ish (bounded) in the failure's payload."""
    context: dict[str, Any] = {
        "sentry": {
            k: v
            for k, v in {
                "event_id": obj.get("event_id"),
                "level": obj.get("level"),
                "logger": obj.get("logger"),
                "platform": obj.get("platform"),
                "dist": obj.get("dist"),
                "transaction": obj.get("transaction"),
                "mechanism": mechanism or None,
                "causes": [
                    {"type": e.get("type"), "value": e.get("value")} for e in exceptions[:-1]
                ]
                or None,
                "contexts": obj.get("contexts"),
                "extra": obj.get("extra"),
                "breadcrumbs": _list(_dict_or_list_values(obj.get("breadcrumbs")))[
                    -MAX_CONTEXT_CRUMBS:
                ]
                or None,
            }.items()
            if v is not None
        }
    }
    encoded = _ENCODE.encode(context)
    if len(encoded) > MAX_CONTEXT_BYTES:
        context["sentry"].pop("breadcrumbs", None)
        context["sentry"].pop("extra", None)
        encoded = _ENCODE.encode(context)
        if len(encoded) > MAX_CONTEXT_BYTES:
            encoded = _ENCODE.encode({"sentry": {"event_id": obj.get("event_id")}})
    return msgspec.Raw(encoded)


def _dict_or_list_values(value: Any) -> Any:
    return value.get("values") if isinstance(value, dict) else value


def decode_event(payload: bytes) -> dict[str, Any]:
    """The event JSON object (400 if it is not one)."""
    try:
        obj = _DECODE.decode(payload)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed event: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest("malformed event: not a JSON object")
    return obj


def read_event(
    obj: dict[str, Any],
    payload: bytes,
    header: dict[str, Any],
    *,
    user_agent: str | None,
    received_at: int,
) -> SentryError:
    """Read one decoded event item (or /store/ body) into a failure and its session facts."""
    trace = _dict(header.get("trace"))
    contexts = _dict(obj.get("contexts"))
    event_id = (
        norm_id(obj.get("event_id"))
        or norm_id(header.get("event_id"))
        or hashlib.blake2b(payload, digest_size=16).hexdigest()  # a retry of it gets the same
    )
    tags = _tags(obj)
    replay_id = (
        norm_id(tags.get("replayId"))
        or norm_id(trace.get("replay_id"))
        or norm_id(_dict(contexts.get("replay")).get("replay_id"))
    )
    trace_id = norm_id(_dict(contexts.get("trace")).get("trace_id")) or norm_id(
        trace.get("trace_id")
    )
    ts = millis(obj.get("timestamp"), received_at)

    exceptions = _exceptions(obj)
    main = exceptions[-1] if exceptions else {}
    mechanism = _dict(main.get("mechanism"))
    message = _message(obj)
    synthetic = bool(mechanism.get("synthetic"))
    is_message = message is not None and (not exceptions or (synthetic and not main.get("type")))
    kind = _kind(obj, mechanism, is_message)
    type_ = text(main.get("type"), SHORT)
    value = text(main.get("value"), MESSAGE) or message
    frames = _list(_dict(main.get("stacktrace")).get("frames"))
    stack = None if synthetic or is_message else chrome_stack(type_, value, frames)
    crash = _crash_frame(frames) if stack else {}

    request = _dict(obj.get("request"))
    page_url = text(request.get("url"), TEXT)
    method = request_url = status = None
    if kind == "network":
        method = text(request.get("method"), 16)
        request_url, page_url = page_url, None
        status = _int(_dict(contexts.get("response")).get("status_code"))
        status = status if status is not None and 0 <= status <= 999 else None

    tags.setdefault("level", text(obj.get("level"), SHORT) or "error")
    dist = text(obj.get("dist"), SHORT)
    if dist:
        tags.setdefault("dist", dist)
    failure = Failure(
        kind=kind,
        ts=ts,
        type=type_,
        message=value,
        stack=stack,
        url=page_url,
        filename=text(crash.get("abs_path") or crash.get("filename"), TEXT),
        lineno=_int(crash.get("lineno")),
        colno=_int(crash.get("colno")),
        method=method,
        request_url=request_url,
        status=status,
        fingerprint=_fingerprint(obj),
        context=_context(obj, exceptions, mechanism),
        tags=tags or None,
        debug_ids=_debug_ids(obj),
    )
    meta = SessionMeta(
        id="pending-session",
        started_at=ts,
        user=user_of(obj),
        user_agent=user_agent_of(obj) or text(user_agent, TEXT),
        url=page_url,
        release=text(obj.get("release") or trace.get("release"), SHORT),
        environment=text(obj.get("environment") or trace.get("environment"), SHORT),
        sdk=sdk_label(obj, header),
    )
    crumbs = _list(_dict_or_list_values(obj.get("breadcrumbs")))
    return SentryError(
        event_id=event_id,
        replay_id=replay_id,
        trace_id=trace_id,
        ts=ts,
        meta=meta,
        failure=failure,
        steps=step_events(crumbs, ts),
        size=len(payload),
    )
