"""What a valid id looks like, defined once: ids end up in blob keys, URLs and SQL parameters.

Patterns are anchored with \\A and \\Z (not ^ and $, which let a trailing newline through).
"""

from __future__ import annotations

import re

# Session ids are chosen by the SDK (UUID-like): 8 to 64 letters, digits, '_' or '-'.
SESSION_ID_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9_-]{7,63}\Z"
SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)
# Other ids we generate (site ids) or accept in keys: 1 to 64 of the same characters.
ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


def is_session_id(value: object) -> bool:
    """Whether value is a well-formed session id."""
    return isinstance(value, str) and SESSION_ID_RE.match(value) is not None


def is_id(value: object) -> bool:
    """Whether value is a well-formed id of any other kind (site ids)."""
    return isinstance(value, str) and ID_RE.match(value) is not None


# Integer ids live in SQLite INTEGER columns: 64-bit signed. A bigger number is no id at all
# (and binding it would raise OverflowError).
MAX_ROW_ID = 2**63 - 1


def is_row_id(value: object) -> bool:
    """Whether value can be an integer row id (positive and within 64 bits)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID
