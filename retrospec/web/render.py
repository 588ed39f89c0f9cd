"""Dashboard rendering: one Jinja2 environment, display filters, security headers, fragments."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from markupsafe import Markup, escape

from retrospec.clock import iso, replay_clock
from retrospec.paths import templates_dir
from retrospec.safetext import for_html

# No inline script anywhere, so script-src needs no 'unsafe-inline': injected markup cannot run.
# Inline styles stay allowed: rrweb rebuilds the recorded page's <style> elements in the replay
# iframe (sandboxed without scripts; an about:blank document, so it runs under this policy).
# Nothing loads from another origin: in a replay that keeps the recorded page's remote CSS
# url()s, @imports, fonts, images and prefetches from telling a third party who watches.
_BASE_CSP = [
    "default-src 'self'",
    "script-src 'self'",
    "connect-src 'self'",
    "frame-src 'self'",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
]
CSP = "; ".join(
    [
        *_BASE_CSP,
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' data: blob:",
    ]
)
# A site whose replay_assets is 'remote': the viewer's browser loads the recorded page's
# stylesheets, images, fonts and media from their hosts (no Referer: see replay_headers).
REMOTE_ASSETS_CSP = "; ".join(
    [
        *_BASE_CSP,
        "style-src 'self' 'unsafe-inline' http: https:",
        "img-src 'self' data: blob: http: https:",
        "font-src 'self' data: http: https:",
        "media-src 'self' data: blob: http: https:",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    # Pages hold private data and a CSRF token: never store them in shared or disk caches.
    "cache-control": "no-store",
    # One URL answers with a full page or an htmx fragment.
    "vary": "HX-Request, Cookie",
}


def replay_headers(replay_assets: str) -> dict[str, str]:
    """Headers of a replay page: its CSP follows the site's replay_assets; never a Referer."""
    csp = REMOTE_ASSETS_CSP if replay_assets == "remote" else CSP
    return {"content-security-policy": csp, "referrer-policy": "no-referrer"}


def is_fragment_request(request: Request[Any, Any, Any]) -> bool:
    """An htmx request wanting a fragment (history restores want the whole page)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") != "true"
    )


# --- filters -------------------------------------------------------------------------------


def _now() -> int:
    return time.time_ns() // 1_000_000


def ago(ms: int | None, now: int | None = None) -> str:
    """'just now', '5 min ago', '3 h ago', '4 days ago', else a date."""
    if ms is None:
        return "never"
    delta = ((now or _now()) - ms) / 1000
    if delta < 45:
        return "just now"
    if delta < 90 * 60:
        return f"{max(1, round(delta / 60))} min ago"
    if delta < 36 * 3600:
        return f"{round(delta / 3600)} h ago"
    if delta < 14 * 86400:
        return f"{round(delta / 86400)} days ago"
    return short_date(ms)


def short_date(ms: int | None) -> str:
    """'Nov 3' this year, 'Nov 3, 2023' otherwise."""
    if ms is None:
        return ""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if dt.year == datetime.now(tz=UTC).year:
        return f"{dt:%b} {dt.day}"
    return f"{dt:%b} {dt.day}, {dt.year}"


def when(ms: int | None) -> str:
    """Absolute UTC time for tooltips and summaries."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(ms: int | float | None) -> str:
    """'850 ms', '42 s', '3 min 12 s', '1 h 4 min'."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{round(ms)} ms"
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def before(seconds: float | None) -> str:
    """How long before the failure a step happened: 'just before', '2.5 s before'."""
    if seconds is None:
        return ""
    if seconds < 0.1:
        return "just before"
    if seconds < 60:
        return f"{seconds:.1f} s before".replace(".0 s", " s")
    return duration(seconds * 1000) + " before"


def num(value: int | float | None) -> str:
    """1234567 -> '1,234,567'."""
    return "0" if value is None else f"{value:,}"


def compact(value: int | None) -> str:
    """1234 -> '1.2k', 2500000 -> '2.5M' (exact numbers go in the title attribute)."""
    n = int(value or 0)
    for limit, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if n >= limit:
            if n < limit * 10:
                return f"{n / limit:.1f}".rstrip("0").rstrip(".") + suffix
            return f"{n // limit}{suffix}"  # floor: "63k" never overstates 63,975
    return str(n)


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 session', '3 sessions'."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def url_label(url: str | None) -> str:
    """A URL without scheme (and without query) for compact display."""
    if not url:
        return ""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    return parts.netloc + (parts.path or "/")


def sparkline(
    counts: Sequence[int], *, width: int = 68, height: int = 22, label: str = ""
) -> Markup:
    """Daily counts as inline SVG bars (only numbers and the escaped label reach the markup).

    Kept small on purpose: the issue list draws one per row and refreshes every 10 seconds.
    """
    n = max(1, len(counts))
    top = max(counts, default=0) or 1
    step = width / n
    bar = max(1.0, step - 2)
    parts = [f'<rect class="base" x="0" y="{height - 1}" width="{width}" height="1"/>']
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        h = max(2, round((height - 1) * count / top))
        cls = ' class="today"' if i == n - 1 else ""
        parts.append(f'<rect{cls} x="{i * step:g}" y="{height - h}" width="{bar:g}" height="{h}"/>')
    title = escape(label or "Failures per day: " + ", ".join(str(int(c)) for c in counts))
    # Safe: only numbers and the escaped title are interpolated.
    return Markup(  # noqa: S704
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img"><title>{title}</title>{"".join(parts)}</svg>'
    )


def query(base: Mapping[str, Any], **changes: Any) -> str:
    """A query string from base with changes applied; empty and None values are dropped."""
    merged = {**base, **changes}
    clean = {k: v for k, v in merged.items() if v not in (None, "", False)}
    return ("?" + urlencode(clean)) if clean else ""


def display(value: Any) -> Any:
    """Every `{{ ... }}` output: strings lose control characters and have bidi isolated.

    Runs before autoescaping; markup we built ourselves (Markup: sparklines, tojson) passes.
    """
    if isinstance(value, str) and not isinstance(value, Markup):
        return for_html(value)
    return value


@cache
def environment() -> Environment:
    """The dashboard's Jinja2 environment (autoescape on for every template)."""
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=display,
    )
    env.filters.update(
        ago=ago,
        when=when,
        iso=iso,
        short_date=short_date,
        duration=duration,
        before=before,
        clock=replay_clock,
        num=num,
        compact=compact,
        url_label=url_label,
        sparkline=sparkline,
    )
    env.globals.update(plural=plural, query=query)
    return env


def render_string(template: str, context: Mapping[str, Any]) -> str:
    """Render one template to a string."""
    return environment().get_template(template).render(context)


def page(
    request: Request[Any, Any, Any],
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    fragment: str | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response[str]:
    """The full page, or only `fragment` when htmx asked for it."""
    name = fragment if fragment and is_fragment_request(request) else template
    assets = request.app.state.assets
    login = request.state.get("login")
    ctx: dict[str, Any] = {
        "asset": assets.url,
        "login": login,
        "csrf_token": login.csrf_token if login else "",
        "section": "",
        "path": request.url.path,
        "now": _now(),
        "demo_enabled": request.app.state.rt.settings.demo_enabled,
        **(context or {}),
    }
    body = render_string(name, ctx)
    return Response(
        body,
        status_code=status_code,
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )
