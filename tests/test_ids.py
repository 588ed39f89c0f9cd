"""One definition of a valid id, anchored at both ends."""

from __future__ import annotations

from retrospec.ids import MAX_ROW_ID, is_id, is_row_id, is_session_id


def test_a_trailing_newline_is_not_part_of_a_valid_id() -> None:
    # `^...$` would let "abc\n" through ($ matches before a final newline); \A...\Z does not.
    assert is_session_id("0f8c6b1e-aaaa-4bbb-8ccc-123456789abc")
    assert not is_session_id("0f8c6b1e-aaaa-4bbb-8ccc-123456789abc\n")
    assert not is_session_id("abcdefgh\n") and not is_id("site1\n") and is_id("site1")
    assert not is_session_id("abc") and not is_session_id("a" * 65)
    assert not is_session_id("../../etc/passwd") and not is_session_id(None)


def test_row_ids_fit_64_bits() -> None:
    assert is_row_id(1) and is_row_id(MAX_ROW_ID)
    assert not is_row_id(0) and not is_row_id(-1) and not is_row_id(2**63) and not is_row_id(2**70)
    assert not is_row_id(True) and not is_row_id("1")
