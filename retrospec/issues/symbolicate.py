"""Symbolication: minified frames -> original frames, before fingerprinting (a pure step).

Each frame whose script has a map gets its original file, line, column, the few source lines
around it (when the map embeds its sources) and a function name, found in this order:
1. the innermost function around the ORIGINAL position, from the parsed original sources
   (survives minifier inlining; sourcemaps/scopes.py),
2. the function around the position in the MINIFIED code, named through the map (symbolic's
   scope names; used when the map does not embed that source),
3. the name the caller used at its call site (the map's `names` token one frame down),
4. the name the browser printed, when it is not minified.
A frame without a map, or whose position the map does not cover, stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from retrospec.issues.stackframes import Frame, collapse_repeats
from retrospec.sourcemaps.maps import (
    CONTEXT_LINES,
    Original,
    SourceMapError,
    minified_scope_name,
    original_position,
    valid_position,
)
from retrospec.sourcemaps.resolve import Resolved

Resolver = Callable[[Frame], Resolved | None]
# Names that say nothing about the bug (bundler runtime glue).
_USELESS = frozenset({"__webpack_require__", "__webpack_modules__", "__require"})


def _name(resolved: Resolved, orig: Original, frame: Frame, line: int, column: int) -> str | None:
    if resolved.scopes is not None:
        inside, name = resolved.scopes.name_at(orig.src_id, orig.line, orig.column)
        if inside or orig.src_id in resolved.scopes.ranges:
            return name  # the original source answers, even "anonymous" or "top level"
    if resolved.minified is not None:
        return minified_scope_name(resolved.map, resolved.minified, line, column)
    return None


def symbolicate(frames: Sequence[Frame], resolve: Resolver) -> tuple[list[Frame], int]:
    """Map frames (top first) through their source maps; returns the frames and the number
    of frames whose map failed (a broken map leaves the frame minified, never raises)."""
    out: list[Frame] = list(frames)
    errors = 0
    callsite: str | None = None  # the name the caller's call site uses for this frame
    for i in range(len(frames) - 1, -1, -1):  # callers first
        frame = frames[i]
        resolved = resolve(frame)
        position = valid_position(frame.line, frame.column)
        if resolved is None or position is None:
            callsite = None
            continue
        line, column = position
        try:
            orig = original_position(resolved.map, line, column, context_lines=CONTEXT_LINES)
            name = _name(resolved, orig, frame, line, column) if orig is not None else None
        except SourceMapError:
            errors += 1
            callsite = None
            continue
        if orig is None:
            callsite = None
            continue
        if not name or name in _USELESS:
            name = callsite or frame.function
        out[i] = replace(
            frame,
            function=name,
            path=orig.file or frame.path,
            line=orig.line,
            column=orig.column,
            in_app=orig.in_app,
            context_line=orig.context_line,
            pre_context=orig.pre_context,
            post_context=orig.post_context,
            mapped=True,
        )
        callsite = orig.token_name
    return collapse_repeats(out), errors
