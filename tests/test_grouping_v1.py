"""Grouping version 1 stays frozen: old issues are found by the hashes version 1 produced.

tests/support/grouping_v1_golden.json holds inputs and the hashes that RetroSpec's version-1
fingerprinter (commit b3b762e, before version 2 existed) gave them: every input the fingerprint
and clustering tests of that commit fingerprinted, plus stacks from every mainstream bundler's
file naming with messages that carry user data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from retrospec.issues import grouping_v1
from retrospec.issues.fingerprint import FailureInput

GOLDEN = json.loads(
    (Path(__file__).parent / "support" / "grouping_v1_golden.json").read_text(encoding="utf-8")
)


def _input(row: dict[str, Any]) -> FailureInput:
    fields = {k: v for k, v in row.items() if k != "hash"}
    if fields.get("explicit") is not None:
        fields["explicit"] = tuple(fields["explicit"])
    return FailureInput(**fields)


def test_golden_covers_every_kind_and_basis() -> None:
    kinds = {row["kind"] for row in GOLDEN}
    assert {"error", "console", "network", "unhandledrejection"} <= kinds
    assert any(row["explicit"] for row in GOLDEN)
    assert len({row["hash"] for row in GOLDEN}) > 100


@pytest.mark.parametrize("row", GOLDEN, ids=lambda r: r["hash"][:8])
def test_version_1_hashes_never_change(row: dict[str, Any]) -> None:
    assert grouping_v1.fingerprint_hash(_input(row)) == row["hash"]
