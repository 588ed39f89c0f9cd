"""Failure messages for grouping: one cross-browser wording, placeholders for values.

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

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "MAX_MESSAGE_CHARS",
    "SCAN_CHARS",
    "TYPE_PREFIX",
    "EngineMessage",
    "canonical",
    "collapse",
    "engine_message",
    "message_template",
    "normalize_message",
    "strip_uncaught",
]

MAX_MESSAGE_CHARS = 300
# Only this much of a message is examined (messages may be 16 KiB); keeps regex cost bounded.
SCAN_CHARS = 2000

TYPE_PREFIX = re.compile(r"([A-Z][\w$]*(?:Error|Exception)|Error): (.*)", re.S)

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


def collapse(text: str) -> str:
    """Collapse runs of whitespace to one space."""
    return " ".join(text.split())


def strip_uncaught(text: str) -> str:
    """Drop Chrome's "Uncaught " and "(in promise) " console prefixes."""
    # window.onerror's message carries Chrome's console prefixes; Error.message does not.
    if text.startswith("Uncaught "):
        text = text[9:]
    if text.startswith("(in promise) "):
        text = text[13:]
    return text


def canonical(text: str) -> str:
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
    return _normalize_cached(message) if len(message) <= 512 else _normalize(message[:SCAN_CHARS])


def _normalize(message: str) -> str:
    text = strip_uncaught(collapse(message))
    prefix = ""
    m = TYPE_PREFIX.fullmatch(text)
    if m is not None:
        prefix, text = f"{m[1]}: ", m[2]
    text = prefix + canonical(text)
    for pattern, placeholder in _PLACEHOLDERS:
        text = pattern.sub(placeholder, text)
    return text[:MAX_MESSAGE_CHARS]


_normalize_cached = lru_cache(maxsize=4096)(_normalize)


# --- grouping version 2 ----------------------------------------------------------------------
# Version 2 keys an error on its failing site; the message only adds what tells two failures at
# one site apart. An engine message names a code identifier (`reading 'x'`): it stays, with the
# wording made independent of null vs undefined. Any other message may carry the user's data
# (codes, names, ids, routes, selectors), so its values become one placeholder.

_ACCESS_FORM = re.compile(r"cannot access property '(.*)' of (?:undefined|null)", re.S)
_NOT_DEFINED = re.compile(r"([\w$]+) is not defined")
_REGEXP = re.compile(
    r"Invalid regular expression\b.*|invalid regular expression flag.*|"
    r"(?:unterminated|unmatched|nothing to repeat|invalid (?:range|class|quantifier|group|escape)"
    r"|missing \)|raw bracket|numbers out of order)\b.*in (?:regular expression|character class).*",
    re.S | re.I,
)
_QUOTED = re.compile(
    r"""(?<![\w'"`])(?:"[^"\n]*"|'[^'\n]*'|`[^`\n]*`)(?![\w'"`])"""
    "|\u201c[^\u201d]*\u201d|\u2018[^\u2019]*\u2019|\u00ab[^\u00bb]*\u00bb"
)
_EDGE_PUNCT = "()[]{}<>,.;:!?"
_ALLCAPS = re.compile(r"[A-Z][A-Z0-9_-]{2,}")
_PLACEHOLDER_RUN = re.compile(r"<[a-z]+>(?:[\s,;:/|+&-]*<[a-z]+>)+")


@dataclass(frozen=True, slots=True)
class EngineMessage:
    """An engine's message in its version-2 grouping form."""

    text: str  # e.g. "cannot access property 'total'", "map is not a function"
    identifier: str | None = None  # the property the text names, when it names one


def engine_message(message: str) -> EngineMessage | None:
    """The version-2 form of a browser engine's own wording, or None for any other message."""
    text = strip_uncaught(collapse(message[:SCAN_CHARS]))
    m = TYPE_PREFIX.fullmatch(text)
    if m is not None:
        text = m[2]
    if _REGEXP.fullmatch(text):
        # The pattern and the reason are the user's text and differ per engine.
        return EngineMessage("invalid regular expression")
    form = canonical(text)
    if form == text:
        not_a = _NOT_A.fullmatch(text)
        if not_a is not None:
            if _IDENT_ONLY.fullmatch(not_a[1].strip()):
                return EngineMessage(text)  # "render is not a function": already canonical
            # A computed callee ("this[("show" + e)]") holds minified names: only the site tells.
            return EngineMessage(f"<expr> is not {not_a[2]}")
        if _NOT_DEFINED.fullmatch(text):
            return EngineMessage(text)
        return None
    access = _ACCESS_FORM.fullmatch(form)
    if access is not None:
        return EngineMessage(f"cannot access property '{access[1]}'", access[1])
    return EngineMessage(form)


def _template_token(token: str) -> str:
    lead = token.lstrip("([{")
    if lead[:1] in ("@", "#", "/", ".") and any(c.isalnum() for c in lead):
        # A mention, selector, hashtag or path: the whole token up to closing punctuation.
        value = lead.rstrip(_EDGE_PUNCT)
        return token.replace(value, "<val>", 1)
    core = token.strip(_EDGE_PUNCT)
    if not core or (core.startswith("<") and core.endswith(">")):
        return token
    valued = (
        any(c.isdigit() for c in core)
        or "/" in core
        or "=" in core
        or _ALLCAPS.fullmatch(core) is not None
    )
    return token.replace(core, "<val>", 1) if valued else token


def _is_json(text: str) -> bool:
    if text[:1] not in ("[", "{"):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def message_template(message: str) -> str:
    """A message with every value-like part replaced by a placeholder (version 2)."""
    text = strip_uncaught(collapse(message[:SCAN_CHARS]))
    if _is_json(message.strip()):
        return "<json>"  # serialised data (a validation library's issue list), not a sentence
    for pattern, placeholder in _PLACEHOLDERS[:-1]:  # URLs, e-mails, UUIDs, IPs, hex
        text = pattern.sub(placeholder, text)
    text = _QUOTED.sub("<str>", text)
    text = " ".join(_template_token(t) for t in text.split(" "))
    text = _PLACEHOLDER_RUN.sub("<val>", text)
    return text[:MAX_MESSAGE_CHARS]
