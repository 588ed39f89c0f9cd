"""The README's first-screen commands stay true: CI runs exactly the README's test command."""

from __future__ import annotations

import re

from tests.support.paths import REPO


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text, re.DOTALL)


def test_first_screen_has_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    first_screen = "\n".join(text.splitlines()[:40])
    commands = _commands()
    assert len(commands) >= 2
    install, test = commands[0], commands[1]
    assert install in first_screen and test in first_screen
    assert "pip install ." in install and install.rstrip().endswith("retrospec serve")
    assert "pytest" in test and "ruff check" in test and "mypy" in test


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = _commands()[1].strip()
    ci_lines = [
        line.strip()
        for line in (REPO / ".ci/run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_lines[-1] == test_command
