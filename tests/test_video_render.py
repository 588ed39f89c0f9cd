"""`retrospec sessions video`: clips of sessions recorded through the SDK in Debian chromium,
rendered by the real CLI and decoded with ffmpeg."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.data import add_site
from tests.support.servers import RequestLog, ServerProcess, free_port, logging_site, server_env
from tests.support.servers import serve_static as static_server
from tests.support.video import (
    BRAND_CENTRE,
    ECHO_BOX,
    GREEN,
    MAGENTA,
    SCALE,
    SECRET_BOX,
    Video,
    checkout_pages,
    cli,
    container_duration,
    decode,
    near,
    profile,
    profile_gap,
    record_checkout,
    session_of,
    video_box,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SECRET = "WMWMWM"
CONTROL = "ililil"  # as many characters, drawn nothing alike


@dataclass
class Recorded:
    server: ServerProcess
    remote: RequestLog
    secret: str  # session ids
    control: str
    remote_requests_after_recording: int


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, browser: Any, ffmpeg_executable: str
) -> Iterator[Recorded]:
    """Two checkout sessions (a secret typed, and a control) with their replays built."""
    root = tmp_path_factory.mktemp("video")
    data = root / "data"
    data.mkdir()
    server = ServerProcess(data_dir=data, port=free_port(), env=server_env(data, jobs="false"))
    server.start()
    (root / "site").mkdir()
    (root / "remote").mkdir()
    try:
        with static_server(root / "site") as static, logging_site(root / "remote") as remote:
            ids = []
            for name, typed in (("secret", SECRET), ("control", CONTROL)):
                site, key = add_site(server.settings, name)
                a, _b = checkout_pages(static, server, key, remote.origin)
                context = browser.new_context(viewport={"width": 1280, "height": 720})
                try:
                    record_checkout(context, a, typed)
                finally:
                    context.close()
                ids.append(session_of(server, site.id))
            seen = len(remote.requests)
            # The recording browser did load the remote image, font and background.
            assert {"/logo.png", "/font.woff2", "/bg.png"} <= {r["path"] for r in remote.requests}
            built = cli(server, "jobs", "run", "replays", "--json")
            assert built.returncode == 0, built.stderr
            yield Recorded(server, remote, ids[0], ids[1], seen)
    finally:
        server.stop()


def render(rec: Recorded, session_id: str, out: Path, *args: str) -> dict[str, Any]:
    res = cli(rec.server, "sessions", "video", session_id, "--out", str(out), "--json", *args)
    assert res.returncode == 0, res.stderr
    result: dict[str, Any] = json.loads(res.stdout)
    return result


def decoded(ffmpeg: str, path: Path, info: dict[str, Any]) -> Video:
    return decode(ffmpeg, path, info["width"], info["height"], info["fps"])


def test_clip_around_the_failure_shows_the_page_then_the_next_page(
    recorded: Recorded, tmp_path: Path, ffmpeg_executable: str
) -> None:
    out = tmp_path / "clip.mp4"
    info = render(recorded, recorded.secret, out, "--around-failure")
    video = decoded(ffmpeg_executable, out, info)
    window_s = (info["to_ms"] - info["from_ms"]) / 1000
    assert info["failure_ms"] is not None and info["from_ms"] <= info["failure_ms"]
    assert abs(video.duration_s - window_s) <= 0.5, (video.duration_s, window_s)
    assert abs(container_duration(ffmpeg_executable, out) - window_s) <= 0.5
    x, y = (round(v * SCALE) for v in BRAND_CENTRE)
    # Just before the failure: page A's magenta block.
    before = int((info["failure_ms"] - info["from_ms"]) * info["fps"] / 1000) - 2
    assert near(video.pixel(before, x, y), MAGENTA), video.pixel(before, x, y)
    # The last frame, after the click on Next: page B's green block instead.
    assert near(video.pixel(len(video.frames) - 1, x, y), GREEN)
    assert not near(video.pixel(0, x, y), GREEN)
    # The render never asked the recorded page's hosts for anything.
    assert len(recorded.remote.requests) == recorded.remote_requests_after_recording
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left beside it


def test_explicit_window_lasts_as_long_as_asked_in_webm(
    recorded: Recorded, tmp_path: Path, ffmpeg_executable: str
) -> None:
    out = tmp_path / "window.webm"
    info = render(recorded, recorded.secret, out, "--from-ms", "1000", "--to-ms", "4000")
    assert (info["from_ms"], info["to_ms"]) == (1000, 4000)
    video = decoded(ffmpeg_executable, out, info)
    assert abs(video.duration_s - 3.0) <= 0.5
    assert abs(container_duration(ffmpeg_executable, out) - 3.0) <= 0.5
    assert out.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a WebM file
    half = render(
        recorded,
        recorded.secret,
        tmp_path / "fast.webm",
        "--from-ms",
        "1000",
        "--to-ms",
        "4000",
        "--speed",
        "2",
    )
    assert abs(half["duration_s"] - 1.5) <= 0.2


def test_masked_secret_never_appears_in_any_frame(
    recorded: Recorded, tmp_path: Path, ffmpeg_executable: str
) -> None:
    secret_info = render(recorded, recorded.secret, tmp_path / "s.mp4", "--around-failure")
    control_info = render(recorded, recorded.control, tmp_path / "c.mp4", "--around-failure")
    secret = decoded(ffmpeg_executable, tmp_path / "s.mp4", secret_info)
    control = decoded(ffmpeg_executable, tmp_path / "c.mp4", control_info)
    field, echo = video_box(SECRET_BOX), video_box(ECHO_BOX)
    control_fields = [profile(control, j, field) for j in range(len(control.frames))]
    # Every look the password field has in the secret's clip, it also has in the control's.
    worst = max(
        min(profile_gap(profile(secret, i, field), c) for c in control_fields)
        for i in range(len(secret.frames))
    )
    # The positive control: the same text as plain text is drawn, and tells the clips apart.
    before = (
        int((secret_info["failure_ms"] - secret_info["from_ms"]) * secret_info["fps"] / 1000) - 2
    )
    shown = profile(secret, before, echo)
    distinct = min(
        profile_gap(shown, profile(control, j, echo)) for j in range(len(control.frames))
    )
    # Measured: plain text differs by ~15 levels, the masked field by ~0.02 (codec noise).
    assert distinct > 6, distinct
    assert worst < 2, worst
    assert min(shown) < 200  # the echo really has dark glyphs in it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-ms", "900000", "--to-ms", "901000"], "outside the session"),
        (["--around-failure", "999999"], "failure 999999 is not in session"),
    ],
)
def test_bad_requests_fail_in_one_line_and_leave_no_file(
    recorded: Recorded, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "bad.mp4"
    res = cli(recorded.server, "sessions", "video", recorded.secret, "--out", str(out), *args)
    assert res.returncode == 1 and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
