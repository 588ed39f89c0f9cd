"""`retrospec sessions video` refusals: one line on stderr, exit 1, no file left behind.

The renders themselves are in test_video_render.py (chromium); these need no browser.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrospec import retention
from tests.support.replays import T0, Env, make_env, sid
from tests.support.rrweb import move, page_load
from tests.support.shop import run_cli

DAY_MS = 86_400_000
HINT = "pip install 'retrospec[video]'"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path / "data")
    yield e
    e.conn.close()


def recorded(env: Env, n: int = 1, *, snapshot: bool = True) -> str:
    """A session with a replay built (or, without a snapshot, one that has nothing to draw)."""
    s = sid(n)
    events = [move(T0 + 200 * i) for i in range(1, 20)]
    env.send(s, 0, [*page_load(T0), *events] if snapshot else events)
    env.run()
    return s


def video(env: Env, tmp_path: Path, *args: str, **extra_env: str) -> tuple[int, str, Path]:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / "clip.mp4"
    res = run_cli(
        {"RETROSPEC_DATA_DIR": env.settings.data_dir, **extra_env},
        "sessions",
        "video",
        *args,
        "--out",
        str(out),
    )
    assert list(out_dir.iterdir()) == []  # nothing written, not even a temporary file
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return res.returncode, lines[0], out


def test_an_expired_replay_is_refused(env: Env, tmp_path: Path) -> None:
    s = recorded(env)
    retention.purge(env.ctx(), now=T0 + 30 * DAY_MS)
    code, line, _ = video(env, tmp_path, s)
    assert code == 1 and line == f"error: the replay of session {s} has expired"


def test_a_session_without_a_snapshot_is_refused(env: Env, tmp_path: Path) -> None:
    s = recorded(env, snapshot=False)
    code, line, _ = video(env, tmp_path, s)
    assert code == 1 and "has no full page snapshot to draw" in line


def test_unknown_session_failure_and_output_type_are_refused(env: Env, tmp_path: Path) -> None:
    s = recorded(env)
    assert video(env, tmp_path, sid(99))[1] == f"error: no session {sid(99)}"
    code, line, _ = video(env, tmp_path, s, "--around-failure")
    assert code == 1 and "has no failure to centre on" in line
    code, line, _ = video(env, tmp_path, s, "7")
    assert code == 2 and "FAILURE_ID goes with --around-failure" in line
    res = run_cli(
        {"RETROSPEC_DATA_DIR": env.settings.data_dir},
        *("sessions", "video", s, "--out", str(tmp_path / "clip.gif")),
    )
    assert res.returncode == 1 and "must end in .mp4 or .webm" in res.stderr


def test_a_missing_encoder_is_one_line_saying_what_to_install(env: Env, tmp_path: Path) -> None:
    s = recorded(env)
    code, line, _ = video(env, tmp_path, s, IMAGEIO_FFMPEG_EXE=str(tmp_path / "no-ffmpeg"))
    assert code == 1 and "ffmpeg" in line and HINT in line


def test_a_missing_browser_is_one_line(env: Env, tmp_path: Path) -> None:
    s = recorded(env)
    code, line, _ = video(env, tmp_path, s, RETROSPEC_CHROMIUM=str(tmp_path / "no-chromium"))
    assert code == 1 and "no Chromium found" in line


def test_without_the_video_extra_command_and_job_say_what_to_install(
    env: Env, tmp_path: Path
) -> None:
    s = recorded(env)
    # A Python where the extra's packages cannot be imported (None in sys.modules).
    hide = (
        "import sys; sys.modules['imageio_ffmpeg'] = None; sys.modules['playwright'] = None; "
        "from retrospec.cli.main import main; sys.argv[0] = 'retrospec'; main()"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", hide, *args],
            env={"RETROSPEC_DATA_DIR": env.settings.data_dir, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    res = run("sessions", "video", s, "--out", str(tmp_path / "clip.mp4"))
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: video rendering needs the video extra: {HINT}"
    assert not (tmp_path / "clip.mp4").exists()
    job = run("jobs", "run", "clips")
    assert job.returncode == 0, job.stderr
    assert job.stdout.strip() == (
        f"clips: ok, 0 items, 0 errors — video rendering needs the video extra: {HINT}"
    )
    listed = run("sessions", "list")  # everything else works
    assert listed.returncode == 0 and s[:8] in listed.stdout
