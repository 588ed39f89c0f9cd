"""Client strings made safe to show: terminals, Markdown reports and the dashboard's HTML.

Failure messages, titles, URLs and user names come from browsers, so they may carry control
characters (an escape sequence can clear a terminal, set its title or plant an OSC 8 link) and
bidirectional overrides (which make text read differently from what it is). Every human-facing
output passes through one of these functions.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline aside), DEL and C1 controls.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS_AND_NEWLINES = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Explicit embeddings/overrides (closed by PDF), isolates (closed by PDI), and the marks.
_OPENERS_PDF = "\u202a\u202b\u202d\u202e"
_OPENERS_PDI = "\u2066\u2067\u2068"
_PDF, _PDI = "\u202c", "\u2069"
BIDI = _OPENERS_PDF + _OPENERS_PDI + _PDF + _PDI + "\u200e\u200f\u061c"
_BIDI_RE = re.compile(f"[{BIDI}]")
_MENTION = re.compile(r"(?<![\w@])@(?=[A-Za-z0-9_])")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str, *, newlines: bool = True) -> str:
    """Control and bidi characters as visible escapes (`\\x1b`, `\\u202e`), never emitted raw."""
    controls = _CONTROLS if newlines else _CONTROLS_AND_NEWLINES
    out = controls.sub(_visible, text)
    return _BIDI_RE.sub(_visible, out) if any(c in BIDI for c in out) else out


def strip_controls(text: str, *, newlines: bool = True) -> str:
    """Control characters removed (tab and, if newlines, newline kept); for Markdown."""
    out = (_CONTROLS if newlines else _CONTROLS_AND_NEWLINES).sub("", text)
    return _BIDI_RE.sub("", out) if any(c in BIDI for c in out) else out


def neutralise_mentions(markdown: str) -> str:
    """`@name` that no tracker turns into a notification (a zero-width space after the @)."""
    return _MENTION.sub("@&#8203;", markdown)


def isolate_bidi(text: str) -> str:
    """Text whose bidi controls cannot leak into what surrounds it.

    Any embedding or isolate left open is closed, and the whole is wrapped in an isolate
    (FSI ... PDI), so an RLO in a failure message reverses only the message itself.
    """
    if not any(c in BIDI for c in text):
        return text
    embeddings = isolates = 0
    for ch in text:
        if ch in _OPENERS_PDF:
            embeddings += 1
        elif ch == _PDF and embeddings:
            embeddings -= 1
        elif ch in _OPENERS_PDI:
            isolates += 1
        elif ch == _PDI and isolates:
            isolates -= 1
    return "\u2068" + text + _PDF * embeddings + _PDI * isolates + _PDI


def for_html(text: str) -> str:
    """What the dashboard shows of a string: controls dropped, bidi isolated (then escaped).

    Bidi characters stay (right-to-left text is legitimate); isolation keeps them from
    reordering anything around the string.
    """
    return isolate_bidi(_CONTROLS.sub("", text)) if text else text
