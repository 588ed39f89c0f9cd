"""Draw a clip's frames in headless Chromium and encode them with ffmpeg.

The page is built here and served to the browser through playwright's request routing from a
made-up origin; every other request (the recorded page's images, fonts, stylesheets on their
hosts) is aborted before it leaves, and the page's CSP, the dashboard's, blocks them too. The
recorded page is rebuilt by the vendored rrweb-player in an iframe sandboxed without scripts,
exactly as the dashboard plays it. Frames are PNG screenshots piped into ffmpeg; the file is
written under a temporary name and renamed when complete, so a failed render leaves nothing.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrospec.chromium import CHROMIUM_ARGS, chromium_path
from retrospec.errors import BadRequest, VideoUnavailable
from retrospec.paths import assets_dir
from retrospec.video.timeline import Plan

INSTALL_HINT = "pip install 'retrospec[video]'"
ORIGIN = "http://render.retrospec.invalid"
# The dashboard's replay policy with remote assets blocked (web/render.py's CSP; a test keeps
# them equal). The renderer never loads the recorded page's hosts, whatever the site allows.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' data: blob:",
    ]
)
FORMATS = {
    ".mp4": [
        *("-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p"),
        *("-movflags", "+faststart", "-f", "mp4"),
    ],
    ".webm": [
        *("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"),
        *("-b:v", "0", "-crf", "36", "-pix_fmt", "yuv420p", "-f", "webm"),
    ],
}
_SHOT = {"format": "png", "optimizeForSpeed": True}
_ASSETS = {
    "/player.css": ("vendor/rrweb-player-2.1.6.min.css", "text/css"),
    "/player.js": ("vendor/rrweb-player-2.1.6.umd.min.js", "text/javascript"),
    "/replay-safety.js": ("js/replay-safety.js", "text/javascript"),
    "/render.js": ("js/render.js", "text/javascript"),
}
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>clip</title>
<link rel="stylesheet" href="/player.css">
<style>
html, body {{ margin: 0; background: #0f1117; overflow: hidden; }}
#stage {{ width: {w}px; height: {h}px; background: #fff; overflow: hidden; }}
.rr-player {{ box-shadow: none !important; border-radius: 0 !important; float: none !important; }}
.replayer-mouse {{ transition: none !important; }}
#caption {{ height: {c}px; display: flex; align-items: center; gap: {gap}px; padding: 0 {gap}px;
  box-sizing: border-box; font: {font}px/1.2 system-ui, sans-serif; color: #e8e9ee;
  background: #0f1117; white-space: nowrap; }}
#cap-clock {{ font-variant-numeric: tabular-nums; font-weight: 600; }}
#cap-url {{ flex: 1 1 auto; min-width: 0; overflow: hidden; text-overflow: ellipsis;
  color: #a9adbd; }}
#cap-action {{ color: #c7ccff; overflow: hidden; text-overflow: ellipsis; max-width: 30%; }}
#cap-skip {{ color: #f5d90a; }}
#cap-failure {{ background: #e5484d; color: #fff; padding: 2px 8px; border-radius: 4px;
  overflow: hidden; text-overflow: ellipsis; max-width: 40%; font-weight: 600; }}
</style>
<script src="/player.js"></script>
<script src="/replay-safety.js"></script>
<script src="/render.js"></script>
</head><body><div id="stage"></div>
<div id="caption"><span id="cap-clock"></span><span id="cap-url"></span>
<span id="cap-skip" hidden></span><span id="cap-action" hidden></span>
<span id="cap-failure" hidden></span></div>
</body></html>
"""


@dataclass(frozen=True, slots=True)
class Tools:
    """The browser and encoder a render needs."""

    chromium: str
    ffmpeg: str


@dataclass(frozen=True, slots=True)
class Rendered:
    """What one render produced."""

    frames: int
    drawn: int  # frames screenshotted (the others repeat an unchanged picture)
    duration_s: float
    size: int
    width: int
    height: int
    blocked_requests: int
    poster: bytes | None


def find_tools(chromium: str | None = None) -> Tools:
    """The browser and ffmpeg, or VideoUnavailable saying in one line what to install."""
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise VideoUnavailable(f"video rendering needs the video extra: {INSTALL_HINT}") from None
    try:
        ffmpeg = str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        ffmpeg = ""
    if not ffmpeg or not os.access(ffmpeg, os.X_OK):
        raise VideoUnavailable(
            f"no ffmpeg encoder found{f' at {ffmpeg}' if ffmpeg else ''}: {INSTALL_HINT}"
        )
    browser = chromium or chromium_path()
    if not browser or not os.access(browser, os.X_OK):
        raise VideoUnavailable(
            "no Chromium found: install your system's chromium (Debian: apt-get install "
            "chromium) or set RETROSPEC_CHROMIUM"
        )
    return Tools(browser, ffmpeg)


def output_format(path: Path) -> list[str]:
    """ffmpeg output options for the file's extension (BadRequest for any other)."""
    options = FORMATS.get(path.suffix.lower())
    if options is None:
        raise BadRequest(f"{path.name}: the output must end in .mp4 or .webm")
    return options


def frame_size(viewport: tuple[int, int], width: int) -> tuple[int, int, int]:
    """(width, replay height, caption height) in even pixels for an output width."""
    w = max(320, min(1920, width)) // 2 * 2
    h = max(2, round(w * viewport[1] / viewport[0]) // 2 * 2)
    caption = max(28, round(w * 0.04)) // 2 * 2
    return w, h, caption


def _changed_at(event_ts: Sequence[int], prev: int, ts: int) -> bool:
    # Any event in (prev, ts] changes the picture; none means the last screenshot still holds.
    i = bisect.bisect_right(event_ts, prev)
    return i < len(event_ts) and event_ts[i] <= ts


def render(
    events: Sequence[dict[str, Any]],
    plan: Plan,
    out: Path,
    *,
    viewport: tuple[int, int],
    width: int,
    tools: Tools,
    poster_frame: int | None = None,
) -> Rendered:
    """Draw every frame of plan and write the video to out (complete or not at all)."""
    from playwright.sync_api import sync_playwright

    options = output_format(out)
    w, h, c = frame_size(viewport, width)
    page_html = _PAGE.format(w=w, h=h, c=c, gap=c // 3, font=round(c * 0.42))
    files: dict[str, tuple[bytes, str]] = {
        path: ((assets_dir() / name).read_bytes(), kind) for path, (name, kind) in _ASSETS.items()
    }
    files["/render.html"] = (page_html.encode(), "text/html")
    files["/events.json"] = (json.dumps(list(events)).encode(), "application/json")
    blocked = 0

    def route(r: Any) -> None:
        nonlocal blocked
        url: str = r.request.url
        path = url[len(ORIGIN) :].split("?", 1)[0] if url.startswith(ORIGIN + "/") else None
        found = files.get(path) if path is not None else None
        if found is None:
            blocked += 1
            r.abort("blockedbyclient")
            return
        body, kind = found
        r.fulfill(
            status=200,
            body=body,
            headers={
                "content-type": kind,
                "content-security-policy": CSP,
                "cache-control": "no-store",
            },
        )

    event_ts = [int(e["timestamp"]) for e in events]
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.part"
    poster: bytes | None = None
    drawn = 0
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                *(tools.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"),
                *("-f", "image2pipe", "-framerate", str(plan.fps), "-c:v", "png", "-i", "-"),
                *("-an", "-r", str(plan.fps), *options, str(tmp)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        assert proc.stdin is not None
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=tools.chromium, headless=True, args=CHROMIUM_ARGS
                )
                try:
                    context = browser.new_context(
                        viewport={"width": w, "height": h + c},
                        device_scale_factor=1,
                        service_workers="block",
                    )
                    context.route("**/*", route)
                    page = context.new_page()
                    page.goto(f"{ORIGIN}/render.html")
                    page.evaluate("([w, h]) => window.retrospecRender.mount(w, h)", [w, h])
                    cdp = context.new_cdp_session(page)
                    shot = b""
                    prev_ts: int | None = None
                    prev_caption: dict[str, str] | None = None
                    for i, frame in enumerate(plan.frames):
                        caption = {
                            "clock": frame.clock,
                            "url": frame.url,
                            "action": frame.action,
                            "failure": frame.failure,
                            "skipping": frame.skipping,
                        }
                        fresh = (
                            prev_ts is None
                            or caption != prev_caption
                            or _changed_at(event_ts, prev_ts, frame.ts)
                        )
                        if fresh:
                            page.evaluate(
                                "([ts, c]) => window.retrospecRender.step(ts, c)",
                                [frame.ts, caption],
                            )
                            # CDP directly: half the time of page.screenshot, which also
                            # waits for fonts and scrolls; step() has already waited for paint.
                            shot = base64.b64decode(
                                cdp.send("Page.captureScreenshot", _SHOT)["data"]
                            )
                            drawn += 1
                        prev_ts, prev_caption = frame.ts, caption
                        if i == poster_frame:
                            poster = shot
                        proc.stdin.write(shot)
                finally:
                    browser.close()
            proc.stdin.close()
            code = proc.wait(timeout=120)
            if code != 0:
                log.seek(0)
                detail = log.read().decode(errors="replace").strip().splitlines()
                raise VideoUnavailable(
                    f"ffmpeg failed ({code}): {detail[-1] if detail else 'no output'}"
                )
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
    return Rendered(
        frames=len(plan.frames),
        drawn=drawn,
        duration_s=plan.duration_s,
        size=out.stat().st_size,
        width=w,
        height=h + c,
        blocked_requests=blocked,
        poster=poster,
    )
