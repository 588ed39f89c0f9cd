"""What the terminal shows of client strings: on a real terminal (a pty) and through a pipe.

Failure messages and user ids come from browsers. An escape sequence in one (clear screen,
an OSC 8 link, a window title, a bidi override) must reach neither a terminal nor a pipe
raw; off a terminal, tables are tab-separated with every value whole.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.data import add_site, make_settings
from tests.support.envelopes import cart_batch
from tests.support.paths import REPO
from tests.support.shop import Shop, ingest, run_cli, run_jobs

pytestmark = pytest.mark.slow

HOSTILE = (
    "Boom \x1b[2J\x1b[H cleared \x1b]0;pwned title\x07 "
    "\x1b]8;;https://evil.example/\x07click me\x1b]8;;\x07 \x9b31m \u202eevil\u202c done"
)
# What must never come out raw: ESC that is not a colour (SGR) code, BEL, C1 CSI, bidi override.
RAW = re.compile(r"\x1b(?!\[[0-9;]*m)|\x07|\x9b|\u202e")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    settings = make_settings(tmp_path_factory.mktemp("hostile") / "data", demo=False)
    _, key = add_site(settings, "shop")
    sessions = [str(uuid.uuid4()) for _ in range(2)]
    ingest(
        settings,
        key,
        (
            cart_batch(s, user=f"evil\x1b]0;x\x07{i}", message=HOSTILE)
            for i, s in enumerate(sessions)
        ),
    )
    run_jobs(settings, "cluster", "replays")
    return Shop(settings, key, sessions)


def run_in_pty(env: dict[str, str], *args: str, columns: int = 100) -> str:
    """Run `retrospec ARGS` with a real terminal as stdout; return what it wrote."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RETROSPEC_")}
    clean.update(env, TERM="xterm-256color", COLUMNS=str(columns), LINES="50")
    clean.pop("NO_COLOR", None)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrospec", *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=clean,
        cwd=REPO,
        close_fds=True,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("the command did not finish")
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    "args", [("issues", "list"), ("issues", "show", "1"), ("sessions", "list"), ("users", "list")]
)
def test_escape_sequences_never_reach_a_terminal(hostile: Shop, args: tuple[str, ...]) -> None:
    out = run_in_pty(hostile.env, *args)
    assert not RAW.search(out), repr(out[:2000])
    if args[0] != "users":
        assert "\\x1b" in out  # shown, escaped, so nothing is hidden from the reader
    assert "\x1b[" in out or args[0] == "users"  # still a terminal: rich colours are there


def test_escape_sequences_never_reach_a_pipe_and_tables_keep_values_whole(hostile: Shop) -> None:
    listing = run_cli(hostile.env, "issues", "list")
    assert listing.returncode == 0, listing.stderr
    assert "\x1b" not in listing.stdout and not RAW.search(listing.stdout)
    header, row = (line.split("\t") for line in listing.stdout.splitlines()[:2])
    title = dict(zip(header, row, strict=True))["title"]
    assert len(title) > 100 and title.endswith("done")  # whole, never cut at 80 columns
    assert "\\x1b[2J" in title and "\\u202e" in title
    sessions = run_cli(hostile.env, "sessions", "list")
    rows = [line.split("\t") for line in sessions.stdout.splitlines()]
    assert rows[0][0] == "session" and len(rows[1][0]) == 36  # whole session ids
    assert all(len(r) == len(rows[0]) for r in rows)  # one value per column, always
    shown = run_cli(hostile.env, "issues", "show", "1")
    markdown = run_cli(hostile.env, "issues", "show", "1", "--markdown")
    for text in (shown.stdout, markdown.stdout, shown.stderr):
        assert not RAW.search(text), repr(text[:500])
    as_json = run_cli(hostile.env, "issues", "show", "1", "--json")
    assert "\x9b" not in as_json.stdout and "\u202e" not in as_json.stdout
    assert "\\u001b[2J" in as_json.stdout  # JSON keeps the value, escaped


def test_tables_on_a_terminal_fit_it(hostile: Shop, tmp_path: Path) -> None:
    out = run_in_pty(hostile.env, "issues", "list", columns=80)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert max(len(line) for line in plain.splitlines()) <= 80
    assert "…" in plain  # the long title is cut to fit, with an ellipsis
