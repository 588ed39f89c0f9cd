"""RetroSpec's tests; the builders they share live in tests/support/."""

import pytest

# Helpers in tests/support/ assert too: give their failures pytest's detailed messages, as
# conftest.py and the test modules get.
pytest.register_assert_rewrite("tests.support")
