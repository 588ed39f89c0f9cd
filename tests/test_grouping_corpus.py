"""The grouping corpus in CI: `retrospec bench grouping --quick` builds seven real apps with
esbuild in two deploys, drives 43 bugs in chromium through the SDK and a real `retrospec serve`,
groups them with the real cluster job and scores the result against the ground truth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrospec.chromium import chromium_path

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.mark.timeout(1500)
def test_corpus_groups_every_bug_once(tmp_path: Path) -> None:
    missing = [
        what
        for what, ok in (
            ("chromium", chromium_path() is not None),
            ("node", shutil.which("node") is not None),
            ("npm", shutil.which("npm") is not None),
        )
        if not ok
    ]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"needs {', '.join(missing)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    if "RETROSPEC_CORPUS_CACHE" in os.environ:
        env["RETROSPEC_CORPUS_CACHE"] = os.environ["RETROSPEC_CORPUS_CACHE"]
    proc = subprocess.run(
        [sys.executable, "-m", "retrospec", "bench", "grouping", "--quick", "--json",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=1450, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    bench = json.loads(proc.stdout)["benchmarks"]["grouping"]
    assert bench["status"] == "ok", bench
    figures = {k: f["value"] for k, f in bench["figures"].items()}
    notes = "\n".join(bench["notes"])
    assert not [n for n in bench["notes"] if n.startswith("step error")], notes
    assert figures["failures"] >= 250 and figures["truth_groups"] >= 40, figures
    assert figures["clean_failures"] == 0, notes
    assert figures["merged"] == 0 and figures["precision"] >= 0.99, notes
    assert figures["recall"] >= RECALL_FLOOR, notes
    classes = ("user_data", "null_vs_undefined", "two_controls", "framework_caught", "dynamic_key")
    # Per class a little slack: under load a session now and then reports a second, different
    # failure after its bug (a consequence), which the ground truth files under the same bug.
    for name in (*classes, "two_reads", "typo", "network"):
        assert figures[f"recall_{name}"] >= 0.9, (name, notes)


# The target (README "Grouping"); the esbuild corpus measured 1.000 when this was written.
RECALL_FLOOR = 0.95
