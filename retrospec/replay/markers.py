"""Walk a replay's events in time order: session summary and timeline markers.

Active time rule: every user-interaction event (mouse move, click and other mouse/touch
interactions, scroll, input, touch move, media interaction, drag, selection) credits the time
until the next one, capped at ACTIVE_GAP_CAP_MS; so a user who stops for a minute adds 5 s, not
60 s, and DOM mutations, timers and network activity never count as activity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from retrospec.ingest.envelope import STEP_KINDS, STEP_TAG
from retrospec.replay.dom import Add, AttrChange, Dom, Remove, SNode, TextChange

# rrweb EventType
FULL_SNAPSHOT, INCREMENTAL, META, CUSTOM = 2, 3, 4, 5
# rrweb IncrementalSource
MUTATION, MOUSE_MOVE, MOUSE_INTERACTION, SCROLL, INPUT, TOUCH_MOVE = 0, 1, 2, 3, 5, 6
MEDIA_INTERACTION, DRAG, SELECTION = 7, 12, 14
ACTIVE_SOURCES = frozenset(
    {MOUSE_MOVE, MOUSE_INTERACTION, SCROLL, INPUT, TOUCH_MOVE, MEDIA_INTERACTION, DRAG, SELECTION}
)
CLICK = 2  # rrweb MouseInteractions.Click

ACTIVE_GAP_CAP_MS = 5_000
RAGE_CLICKS = 3
RAGE_WINDOW_MS = 1_000
# Custom failure events from the SDK match a failures row within this distance.
FAILURE_MATCH_MS = 2_000
MAX_MARKERS = 5_000  # clicks/inputs/navigations per session; failure markers are always kept
MAX_PAGES = 100
MARKER_LABEL_CHARS = 160
FAILURE_TAG = "retrospec.failure"
NAVIGATION_TAG = "navigation"


class _FullData(msgspec.Struct):
    node: SNode


class _IncData(msgspec.Struct):
    source: int
    type: int | None = None
    id: int | None = None
    userTriggered: bool | None = None  # rrweb's field name
    adds: list[Add] | None = None
    removes: list[Remove] | None = None
    texts: list[TextChange] | None = None
    attributes: list[AttrChange] | None = None


class _MetaData(msgspec.Struct):
    href: str | None = None


class _CustomData(msgspec.Struct):
    tag: str | None = None
    payload: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


_FULL = msgspec.json.Decoder(_FullData)
_INC = msgspec.json.Decoder(_IncData)
_META = msgspec.json.Decoder(_MetaData)
_CUSTOM = msgspec.json.Decoder(_CustomData)
_ANY = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class FailureRow:
    """The columns of a failures row a marker needs."""

    id: int
    kind: str
    type: str | None
    message: str | None
    ts: int
    method: str | None = None
    request_url: str | None = None
    status: int | None = None


@dataclass(slots=True)
class MarkerRow:
    """A timeline marker before its offset is known."""

    ts: int
    kind: str
    label: str | None
    failure_id: int | None = None


@dataclass(slots=True)
class Summary:
    """What the walk learned about one session."""

    events: int = 0
    start_ts: int | None = None
    end_ts: int | None = None
    active_ms: int = 0
    pages: list[str] = field(default_factory=list)
    clicks: int = 0
    rage_clicks: int = 0
    markers: list[MarkerRow] = field(default_factory=list)
    has_snapshot: bool = False
    undecodable: int = 0

    @property
    def duration_ms(self) -> int | None:
        """End minus start."""
        if self.start_ts is None or self.end_ts is None:
            return None
        return self.end_ts - self.start_ts


def strip_url(url: str) -> str:
    """A URL without its query and fragment (a '#/route' of a hash router is kept, unqueried)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]
    fragment = ""
    if parts.fragment.startswith(("/", "!/")):
        fragment = parts.fragment.split("?", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", fragment))


def url_host(url: str | None) -> str | None:
    """Host name of a URL, None if there is none."""
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def failure_label(f: FailureRow, page_host: str | None = None) -> str:
    """`TypeError: x is undefined` or `GET /api/orders/17 → 500` for network failures."""
    if f.kind == "network" and (f.method or f.request_url):
        target = "?"
        if f.request_url:
            try:
                parts = urlsplit(f.request_url)
                target = parts.path or "/"
                if parts.netloc and parts.hostname != page_host:
                    target = parts.netloc + target
            except ValueError:
                target = f.request_url.split("?", 1)[0]
        outcome = str(f.status) if f.status else "failed"
        return _cap(f"{f.method or 'GET'} {target} → {outcome}")
    return _cap(type_message(f.type, f.message) or f.kind)


def type_message(type_: str | None, message: str | None) -> str | None:
    """'Type: message', or whichever half exists."""
    first_line = " ".join(message.split()) if message else None
    if type_ and first_line:
        return f"{type_}: {first_line}"
    return type_ or first_line


def _cap(text: str) -> str:
    return text if len(text) <= MARKER_LABEL_CHARS else text[: MARKER_LABEL_CHARS - 1] + "…"


class Timeline:
    """Feed events in timestamp order, then call finish()."""

    def __init__(self, failures: list[FailureRow], page_host: str | None = None) -> None:
        self.summary = Summary()
        self._failures = failures
        self._page_host = page_host
        self._dom = Dom()
        self._page: str | None = None
        self._last_active: int | None = None
        self._recent_clicks: dict[int, list[int]] = {}
        self._raging: set[int] = set()
        self._last_input: int | None = None  # target of the input marker still being typed in
        self._sdk_failures: list[FailureRow] = []
        self._markers = 0

    def feed(self, ts: int, etype: int, data: msgspec.Raw) -> None:
        """Account for one event."""
        s = self.summary
        s.events += 1
        if s.start_ts is None:
            s.start_ts = ts
        s.end_ts = ts if s.end_ts is None else max(s.end_ts, ts)
        try:
            if etype == INCREMENTAL:
                self._incremental(ts, _INC.decode(data))
            elif etype == FULL_SNAPSHOT:
                s.has_snapshot = True
                self._dom.load_snapshot(_FULL.decode(data).node)
                self._recent_clicks.clear()
                self._raging.clear()
                self._last_input = None
            elif etype == META:
                href = _META.decode(data).href
                if href:
                    self._navigate(ts, href)
            elif etype == CUSTOM:
                self._custom(ts, _CUSTOM.decode(data))
        except (msgspec.ValidationError, msgspec.DecodeError):
            # Valid JSON in a shape we do not know (a newer rrweb, a plugin): it still plays,
            # it just adds nothing to the summary.
            s.undecodable += 1

    def _incremental(self, ts: int, inc: _IncData) -> None:
        source = inc.source
        if source in ACTIVE_SOURCES:
            if self._last_active is not None:
                self.summary.active_ms += min(ts - self._last_active, ACTIVE_GAP_CAP_MS)
            self._last_active = ts
        if source == MUTATION:
            self._dom.apply_mutation(inc.adds, inc.removes, inc.texts, inc.attributes)
        elif source == MOUSE_INTERACTION and inc.type == CLICK and inc.id is not None:
            self._click(ts, inc.id)
        elif source == INPUT and inc.id is not None and inc.userTriggered is not False:
            self._input(ts, inc.id)

    def _click(self, ts: int, node_id: int) -> None:
        s = self.summary
        target = self._dom.resolve(node_id)
        label = self._dom.describe(target)
        s.clicks += 1
        self._add(MarkerRow(ts, "click", label))
        recent = [t for t in self._recent_clicks.get(target, ()) if ts - t <= RAGE_WINDOW_MS]
        if not recent:
            self._raging.discard(target)  # a pause ends a rage burst
        recent.append(ts)
        self._recent_clicks[target] = recent
        if len(recent) >= RAGE_CLICKS and target not in self._raging:
            self._raging.add(target)
            s.rage_clicks += 1
            self._add(MarkerRow(recent[0], "rage_click", label))
        if len(self._recent_clicks) > 64:  # keep the per-element state small
            self._recent_clicks = {
                k: v for k, v in self._recent_clicks.items() if ts - v[-1] <= RAGE_WINDOW_MS
            }

    def _input(self, ts: int, node_id: int) -> None:
        # One marker per field edited, not one per keystroke; the value is never looked at.
        target = self._dom.resolve(node_id)
        if self._last_input == target:
            return
        self._add(MarkerRow(ts, "input", self._dom.describe(target)))
        self._last_input = target

    def _navigate(self, ts: int, href: str) -> None:
        url = strip_url(href)
        if url == self._page:
            return  # a re-snapshot of the same page, or the SDK echoing the meta event
        self._page = url
        pages = self.summary.pages
        if url not in pages and len(pages) < MAX_PAGES:
            pages.append(url)
        self._add(MarkerRow(ts, "navigation", _cap(url)))

    def _custom(self, ts: int, data: _CustomData) -> None:
        if data.tag not in (NAVIGATION_TAG, FAILURE_TAG, STEP_TAG) or not len(data.payload):
            return
        payload: Any = _ANY.decode(data.payload)
        if data.tag == STEP_TAG:
            self._step(ts, payload)
        elif data.tag == NAVIGATION_TAG:
            href = payload
            if isinstance(payload, dict):
                href = payload.get("href") or payload.get("url") or payload.get("to")
            if isinstance(href, str) and href:
                self._navigate(ts, href)
        elif isinstance(payload, dict):
            # The SDK's copy of a failure (same fields as the failures row, ts included).
            when = _number(payload.get("ts"))
            self._sdk_failures.append(
                FailureRow(
                    id=0,
                    kind=_text(payload.get("kind")) or "error",
                    type=_text(payload.get("type")),
                    message=_text(payload.get("message")),
                    ts=when if when is not None else ts,
                    method=_text(payload.get("method")),
                    request_url=_text(payload.get("request_url")),
                    status=_number(payload.get("status")),
                )
            )

    def _step(self, ts: int, payload: Any) -> None:
        # A step known without the DOM (a Sentry breadcrumb): its label is all there is.
        if not isinstance(payload, dict) or payload.get("kind") not in STEP_KINDS:
            return
        label = _text(payload.get("label"))
        if label is None:
            return
        kind = str(payload["kind"])
        if kind == "navigation":
            self._navigate(ts, label)
            return
        if kind == "click":
            self.summary.clicks += 1
        self._add(MarkerRow(ts, kind, _cap(" ".join(label.split()))))

    def _add(self, marker: MarkerRow) -> None:
        if marker.kind != "input":
            self._last_input = None
        if self._markers >= MAX_MARKERS:
            return
        self._markers += 1
        self.summary.markers.append(marker)

    def finish(self) -> Summary:
        """Add failure markers and return the summary with markers in time order."""
        s = self.summary
        for f in self._failures:
            s.markers.append(MarkerRow(f.ts, "failure", failure_label(f, self._page_host), f.id))
        # SDK failure events whose failures row never arrived still get a marker.
        for sdk in self._sdk_failures:
            if not any(_same_failure(sdk, f) for f in self._failures):
                label = failure_label(sdk, self._page_host)
                s.markers.append(MarkerRow(sdk.ts, "failure", label, None))
        s.markers.sort(key=lambda m: m.ts)
        return s


def _same_failure(sdk: FailureRow, f: FailureRow) -> bool:
    close = abs(f.ts - sdk.ts) <= FAILURE_MATCH_MS
    return close and f.kind == sdk.kind and (sdk.type is None or f.type in (None, sdk.type))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


def merge_failure_markers(stored: list[MarkerRow], live: list[MarkerRow]) -> list[MarkerRow]:
    """Stored markers with failure markers taken from the failures table as it is now.

    A failure-only batch does not make a session dirty, so the table can be newer than the
    last build; an SDK-only failure marker is dropped once a row with the same label exists.
    """
    out = [m for m in stored if m.kind != "failure"]
    for m in stored:
        if (
            m.kind == "failure"
            and m.failure_id is None
            and not any(abs(m.ts - f.ts) <= FAILURE_MATCH_MS and f.label == m.label for f in live)
        ):
            out.append(m)
    out.extend(live)
    out.sort(key=lambda m: m.ts)
    return out
