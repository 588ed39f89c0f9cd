"""Privacy on the server, for every front door: query strings out of URLs, secrets out of text.

The SDK already strips and masks in the browser; this runs again on whatever arrives (older SDKs,
other clients), before anything is stored:

- URLs lose their query string (except the parameters `keep_query_params` names) and any
  fragment that carries parameters (`#access_token=...`); a route-like fragment (`#/cart`) stays.
  That applies to URL fields, to URLs inside stacks and messages, and to the recorded DOM's
  href/src/srcset/action/formaction/poster attributes and navigation URLs inside rrweb events.
- Secrets go the way Sentry's default server-side scrubber takes them: values under keys that
  contain password, secret, passwd, api_key, apikey, auth, credentials, mysql_pwd, privatekey,
  private_key, token or bearer become "[Filtered]"; so do bearer tokens, `password=...` pairs,
  credentials in URLs (`https://user:pass@host`) and card numbers (13-19 digits passing Luhn)
  inside any string.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

FILTERED = "[Filtered]"
# Substrings of a key that mark its value as secret (Sentry's defaults).
SENSITIVE_KEYS = (
    "password",
    "secret",
    "passwd",
    "api_key",
    "apikey",
    "auth",
    "credentials",
    "mysql_pwd",
    "privatekey",
    "private_key",
    "token",
    "bearer",
)
# Work bound for one context value: deeper or larger structures are cut, never walked.
MAX_DEPTH = 8
MAX_ITEMS = 2_000
MAX_CHARS = 65_536

_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s\"'<>()\[\]{}`]+")
_LINE_COL = re.compile(r"(?::\d+){1,2}$")
_USERINFO = re.compile(r"(?<=://)[^/\s@:]+:[^/\s@]*@")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/-]{8,}=*")
# key=value and "key": value pairs are found by looking for the key words with str.find and
# walking out from each hit (bounded steps), never with a regex around a key: a pattern like
# `[\w]*password[\w]*` backtracks quadratically over a long word.
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_VALUE_STOP = frozenset(" \t\r\n&,;\"'<>)}]")
_MAX_KEY = 64
# Digits to "d", separators dropped: a card number shows as 13 "d"s in a row in that picture,
# which bytes.translate and a substring test find at C speed (a literal "ddd..." in the text
# only costs the exact check).
_DIGIT_PICTURE = bytes.maketrans(b"0123456789", b"dddddddddd")
_MAX_VALUE = 4096
# Card numbers: 13-19 digits with optional space or dash separators, a known network prefix
# (Visa, Mastercard, Amex, Discover) and the Luhn check, so timestamps and ids rarely match.
# Runs of digits are found first (cheap), then each is checked in Python.
_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,18}")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5)")
_UNSAFE_ATTRS = b"href|src|srcset|action|formaction|poster|url|request_url"
_EVENT_URL = re.compile(rb'("(' + _UNSAFE_ATTRS + rb')"\s{0,8}:\s{0,8})"((?:[^"\\]|\\.)*)"')


_SENSITIVE_RE = re.compile("|".join(SENSITIVE_KEYS))


# Failures repeat (one bug in many browsers, an error loop on one page), so the same message,
# stack, tag value or field name is scrubbed again and again: bounded caches of recent results
# turn that into one hash. Only texts up to CACHED_TEXT_CHARS are cached, so each cache holds
# at most ~4 MB; longer text is rare and is scrubbed every time.
CACHED_TEXT_CHARS = 4096
_CACHE_ENTRIES = 1024


def is_sensitive_key(key: str) -> bool:
    """Whether a field name marks its value as secret."""
    if len(key) <= CACHED_TEXT_CHARS:
        return _sensitive_cached(key)
    return _sensitive(key)


def _sensitive(key: str) -> bool:
    return _SENSITIVE_RE.search(key.lower().replace("-", "_")) is not None


_sensitive_cached = functools.lru_cache(maxsize=_CACHE_ENTRIES)(_sensitive)


def _fragment(fragment: str) -> str:
    # A route (#/cart, #section) stays, minus its own query; one carrying parameters
    # (#access_token=...) goes, as in the SDK.
    route = fragment.split("?", 1)[0]
    return "" if "=" in route or "&" in route else route


def strip_url(url: str, keep: frozenset[str] = frozenset()) -> str:
    """A URL without its query string (bar kept parameters) and parameter-carrying fragment."""
    if "?" not in url and "#" not in url and "@" not in url:
        return url  # the common case: nothing to strip
    base, hash_mark, fragment = url.partition("#")
    path, question, query = base.partition("?")
    out = path
    if question and keep:
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k in keep]
        if kept:
            out += "?" + urlencode(kept)
    route = _fragment(fragment) if hash_mark else ""
    if route:
        out += "#" + route
    return _USERINFO.sub(FILTERED + "@", out)


def _strip_token(token: str, keep: frozenset[str]) -> str:
    # Stack frames end their URL with :line:col, which belongs after the stripped path.
    line_col = _LINE_COL.search(token)
    tail = line_col.group(0) if line_col else ""
    head = token[: len(token) - len(tail)] if tail else token
    return strip_url(head, keep) + tail


def strip_urls_in_text(text: str, keep: frozenset[str] = frozenset()) -> str:
    """Every URL inside free text (stacks, messages) without its query string."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: _strip_token(m.group(0), keep), text)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    text, start, end = match.string, match.start(), match.end()
    if (start and (text[start - 1].isdigit() or text[start - 1] == ".")) or (
        end < len(text) and (text[end].isdigit() or text[end] == ".")
    ):
        return match.group(0)  # part of a longer number, a version or a decimal
    digits = match.group(0).replace(" ", "").replace("-", "")
    if _CARD_PREFIX.match(digits) and _luhn(digits):
        return FILTERED
    return match.group(0)


def _value_span(text: str, at: int) -> tuple[int, int] | None:
    """(start, end) of the value after a key that ends at `at`, or None if no pair is there."""
    n = len(text)
    k = at
    quoted_key = k < n and text[k] in "\"'"
    if quoted_key:
        k += 1
    while k < n and k - at < 6 and text[k] in " \t":
        k += 1
    if k >= n or not (text[k] == "=" or (text[k] == ":" and quoted_key)):
        return None
    k += 1
    while k < n and text[k] in " \t" and k - at < 12:
        k += 1
    if k < n and text[k] in "\"'":
        close = text.find(text[k], k + 1, k + 1 + _MAX_VALUE)
        return None if close < 0 else (k + 1, close)
    end = k
    while end < n and end - k < _MAX_VALUE and text[end] not in _VALUE_STOP:
        end += 1
    return None if end == k else (k, end)


def _filter_pairs(text: str, lower: str) -> str:
    hits: set[int] = set()
    for word in SENSITIVE_KEYS:
        i = lower.find(word)
        while i >= 0:
            hits.add(i)
            i = lower.find(word, i + 1)
    if not hits:
        return text
    out: list[str] = []
    last = walked = 0
    for i in sorted(hits):
        if i < last or i < walked:
            continue  # inside a value already filtered, or a key already walked
        j = i
        while j < len(text) and j - i < _MAX_KEY and text[j] in _KEY_CHARS:
            j += 1
        walked = j
        span = _value_span(text, j)
        if span is None:
            continue
        out.append(text[last : span[0]])
        out.append(FILTERED)
        last = span[1]
    out.append(text[last:])
    return "".join(out)


def scrub_text(text: str, keep: frozenset[str] = frozenset()) -> str:
    """Secrets and query strings out of free text (messages, stacks, string values)."""
    if len(text) <= CACHED_TEXT_CHARS:
        return _scrub_cached(text, keep)
    return _scrub_text(text, keep)


def _scrub_text(text: str, keep: frozenset[str]) -> str:
    # Each rule runs only when a cheap test says it could match: most text has no `?`, `@`,
    # bearer token or long digit run, and pays for a few substring scans only.
    out = text
    if "://" in out and ("?" in out or "#" in out or "@" in out):
        out = strip_urls_in_text(out, keep)
    if "@" in out:
        out = _USERINFO.sub(FILTERED + "@", out)
    if "earer" in out or "EARER" in out:
        out = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{FILTERED}", out)
    # A pair needs key=value or a quoted key before a colon ("key": value).
    if "=" in out or '":' in out or "':" in out or '" :' in out:
        out = _filter_pairs(out, out.lower())
    # A card number has at least 13 digits; shorter text cannot hold one.
    if len(out) >= 13:
        picture = out.encode("utf-8", "surrogatepass").translate(_DIGIT_PICTURE, b" -")
        if b"ddddddddddddd" in picture:
            out = _DIGIT_RUN.sub(_card, out)
    return out


_scrub_cached = functools.lru_cache(maxsize=_CACHE_ENTRIES)(_scrub_text)


def scrub_value(value: Any, keep: frozenset[str] = frozenset(), max_string: int = 8192) -> Any:
    """A decoded JSON value with secret-named fields filtered and every string scrubbed.

    Strings are cut to max_string first, so the work per value stays bounded.
    """
    budget = [MAX_ITEMS, MAX_CHARS]

    def walk(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or budget[1] < 0:
            return "[…]"
        if isinstance(v, str):
            cut = v if len(v) <= max_string else v[:max_string] + "…"
            budget[1] -= len(cut)
            return scrub_text(cut, keep)
        if isinstance(v, dict):
            if depth >= MAX_DEPTH:
                return "[Object]"
            return {
                str(k): FILTERED if is_sensitive_key(str(k)) else walk(item, depth + 1)
                for k, item in v.items()
            }
        if isinstance(v, list):
            if depth >= MAX_DEPTH:
                return "[Array]"
            return [walk(item, depth + 1) for item in v]
        return v

    return walk(value, 0)


def scrub_tags(tags: dict[str, str] | None) -> dict[str, str] | None:
    """Tag values under secret-named keys filtered, the rest scrubbed."""
    if tags is None:
        return None
    return {k: FILTERED if is_sensitive_key(k) else scrub_text(v) for k, v in tags.items()}


def _srcset(value: str, keep: frozenset[str]) -> str:
    parts = []
    for candidate in value.split(","):
        bits = candidate.strip().split(None, 1)
        if bits:
            bits[0] = strip_url(bits[0], keep)
        parts.append(" ".join(bits))
    return ", ".join(parts)


def _event_url(keep: frozenset[str]) -> Callable[[re.Match[bytes]], bytes]:
    def fix(match: re.Match[bytes]) -> bytes:
        prefix, name, raw = match.group(1), match.group(2), match.group(3)
        if b"?" not in raw and b"#" not in raw and b"@" not in raw and b"\\" not in raw:
            return match.group(0)
        text = json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8", "replace")
        clean = _srcset(text, keep) if name == b"srcset" else strip_url(text, keep)
        if clean == text:
            return match.group(0)
        return prefix + json.dumps(clean, ensure_ascii=False).encode("utf-8")

    return fix


def strip_event_urls(events: bytes, keep: frozenset[str] = frozenset()) -> bytes:
    """rrweb events (a JSON array) with query strings gone from the recorded DOM's URLs.

    Works on the bytes, never decoding the events: only `"href":"..."`-shaped members
    (href, src, srcset, action, formaction, poster, url, request_url) are rewritten.
    """
    if b"?" not in events and b"#" not in events and b"@" not in events and b"\\u" not in events:
        return events
    return _EVENT_URL.sub(_event_url(keep), events)
