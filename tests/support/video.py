"""Replay clips in tests: a checkout recorded through the SDK in chromium, and decoded frames.

The checkout page draws distinctive blocks the frame checks look for: a magenta brand block
(page A), a green one after the navigation (page B), a password field with a large font (the
typed secret must stay masked) and a large plain-text echo of it (the positive control: plain
text is recorded as it is, so two clips of different secrets differ there).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.browser import query, sdk_page, wait_for
from tests.support.servers import ServerProcess, StaticSite

MAGENTA = (255, 0, 255)
GREEN = (0, 192, 0)
# Recorded at 1280x720 and rendered 960 wide: page pixels * 0.75 in the video.
SCALE = 0.75
BRAND_CENTRE = (240, 140)  # page coordinates of the brand block's centre (A) / done block (B)
SECRET_BOX = (40, 280, 1140, 420)  # x0, y0, x1, y1 of the password field, page coordinates
ECHO_BOX = (40, 460, 1140, 590)

_STYLE = """
<style>
body { margin: 0; font-family: sans-serif; background: #fff; }
.block { position: absolute; left: 40px; top: 40px; width: 400px; height: 200px; }
#pay { position: absolute; left: 500px; top: 40px; width: 200px; height: 80px; }
#next { position: absolute; left: 760px; top: 40px; font-size: 32px; }
#secret { position: absolute; left: 40px; top: 280px; width: 1100px; height: 140px;
  font: 96px monospace; border: 2px solid #888; box-sizing: border-box; }
#echo { position: absolute; left: 40px; top: 460px; width: 1100px; height: 130px;
  font: 96px monospace; line-height: 130px; overflow: hidden; }
.remote { position: absolute; left: 1200px; top: 40px; width: 8px; height: 8px; }
</style>
"""


def checkout_pages(
    static: StaticSite, server: ServerProcess, key: str, remote_origin: str
) -> tuple[str, str]:
    """Write page A (brand, secret field, echo, failing Pay button, link to B) and page B."""
    a = static.write(
        "a.html",
        sdk_page(
            server,
            key,
            body=_STYLE
            + '<div id="brand" class="block" style="background:#ff00ff"></div>'
            + '<button id="pay" onclick="throw new TypeError(\'card is undefined\')">Pay</button>'
            + '<a id="next" href="b.html">Next</a>'
            + '<input id="secret" type="password" autocomplete="off">'
            + '<div id="echo"></div>'
            + f'<img class="remote" src="{remote_origin}/logo.png" alt="">'
            # Every other way a page pulls from its hosts: none of it may load in a render.
            + f'<link rel="prefetch" href="{remote_origin}/prefetch.js">'
            + f"<style>@font-face {{ font-family: R; src: url({remote_origin}/font.woff2); }}"
            + " #next { font-family: R, sans-serif; }"
            + f" #pay {{ background-image: url({remote_origin}/bg.png); }}</style>",
        ),
    )
    b = static.write(
        "b.html",
        sdk_page(
            server,
            key,
            body=_STYLE + '<div id="done" class="block" style="background:#00c000"></div>',
        ),
    )
    return a, b


def record_checkout(context: Any, url: str, secret: str) -> None:
    """Type the secret, fail on Pay, go to page B; the SDK records it all as one session."""
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function("window.rs !== undefined")
        for i in range(6):
            page.mouse.move(100 + 80 * i, 300 + 10 * i)
            page.wait_for_timeout(80)
        page.click("#secret")
        page.keyboard.type(secret, delay=60)
        page.evaluate("s => { document.getElementById('echo').textContent = s; }", secret)
        page.mouse.move(600, 80)
        page.wait_for_timeout(1500)
        page.click("#pay")
        page.wait_for_timeout(1000)
        page.click("#next")
        page.wait_for_selector("#done")
        page.wait_for_function("window.rs !== undefined")
        for i in range(6):
            page.mouse.move(300 + 40 * i, 400)
            page.wait_for_timeout(150)
        page.wait_for_timeout(1200)
        page.evaluate("() => window.rs.flush()")
    finally:
        page.close()


def session_of(server: ServerProcess, site_id: str) -> str:
    """The one session a site recorded, once its failure has arrived."""
    rows = wait_for(
        lambda: query(
            server.settings.db_path,
            "SELECT id FROM sessions WHERE site_id = ? AND failures > 0",
            site_id,
        ),
        what="the recorded session",
    )
    return str(rows[0]["id"])


def cli(
    server: ServerProcess, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python -m retrospec ARGS` against the server's data dir."""
    return subprocess.run(
        [sys.executable, "-m", "retrospec", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Video:
    """A decoded clip: RGB frames of width x height."""

    width: int
    height: int
    frames: list[bytes]
    fps: float

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    def pixel(self, index: int, x: int, y: int) -> tuple[int, int, int]:
        """RGB of one pixel of one frame."""
        at = (y * self.width + x) * 3
        f = self.frames[index]
        return f[at], f[at + 1], f[at + 2]

    def region(self, index: int, box: tuple[int, int, int, int]) -> list[int]:
        """Every RGB byte of a video-coordinate box of one frame, row by row."""
        x0, y0, x1, y1 = box
        f = self.frames[index]
        out: list[int] = []
        for y in range(y0, y1):
            out.extend(f[(y * self.width + x0) * 3 : (y * self.width + x1) * 3])
        return out


def decode(ffmpeg: str, path: Path, width: int, height: int, fps: float) -> Video:
    """Every frame of a video file as RGB, decoded by ffmpeg."""
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    size = width * height * 3
    assert raw and len(raw) % size == 0, (len(raw), size)
    return Video(width, height, [raw[i : i + size] for i in range(0, len(raw), size)], fps)


def container_duration(ffmpeg: str, path: Path) -> float:
    """The duration the file's header states (what a player shows)."""
    info = subprocess.run(
        [ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False
    ).stderr
    stamp = info.split("Duration: ", 1)[1].split(",", 1)[0]
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def video_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """A page-coordinate box in video coordinates, shrunk by 4 px against edge blur."""
    x0, y0, x1, y1 = (round(v * SCALE) for v in box)
    return x0 + 4, y0 + 4, x1 - 4, y1 - 4


def near(rgb: tuple[int, int, int], want: tuple[int, int, int], slack: int = 40) -> bool:
    """Whether a decoded colour is the wanted one within lossy-codec slack."""
    return all(abs(a - b) <= slack for a, b in zip(rgb, want, strict=True))


def profile(
    video: Video, index: int, box: tuple[int, int, int, int], bin_px: int = 12
) -> list[float]:
    """Mean green level of each bin_px-wide column strip of a box: a cheap shape signature."""
    x0, y0, x1, y1 = box
    f = video.frames[index]
    bins = (x1 - x0) // bin_px
    totals = [0] * bins
    for y in range(y0, y1):
        row = (y * video.width + x0) * 3 + 1
        for b in range(bins):
            start = row + b * bin_px * 3
            totals[b] += sum(f[start : start + bin_px * 3 : 3])
    count = bin_px * (y1 - y0)
    return [t / count for t in totals]


def profile_gap(a: list[float], b: list[float]) -> float:
    """Mean absolute difference of two signatures."""
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)
