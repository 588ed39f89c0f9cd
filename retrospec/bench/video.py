"""video: replay clip render speed (seconds of video per CPU second) and peak memory.

A generated checkout session (a product grid, the pointer moving every 100 ms, a counter
changing twice a second, a click every 2 s: every frame differs, the renderer's worst case) is
rendered to MP4 by the same code `retrospec sessions video` and the clips job use. CPU counts
this process and every child (the browser and its helpers, the encoder); memory is the peak of
their summed PSS, sampled every 100 ms.
"""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    Unavailable,
    at_least,
    require_module,
)
from retrospec.chromium import chromium_path
from retrospec.video import render, timeline

T0 = 1_732_560_000_000
EXTRA = "'retrospec[video]'"


def _el(node_id: int, tag: str, attrs: dict[str, str], *children: Any) -> dict[str, Any]:
    return {
        "type": 2,
        "tagName": tag,
        "attributes": attrs,
        "childNodes": list(children),
        "id": node_id,
    }


def _text(node_id: int, text: str) -> dict[str, Any]:
    return {"type": 3, "textContent": text, "id": node_id}


def session_events(seconds: float) -> list[dict[str, Any]]:
    """A recorded-looking session of this length: snapshot, pointer, text changes, clicks."""
    style = (
        "body{font:16px sans-serif;margin:0}.grid{display:grid;grid-template-columns:repeat(4,1fr);"
        "gap:16px;padding:16px}.card{height:160px;background:#eef;border-radius:8px;padding:8px}"
        "#count{font-size:48px;color:#c20}"
    )
    cards = [
        _el(100 + 2 * i, "div", {"class": "card"}, _text(101 + 2 * i, f"Product {i}"))
        for i in range(16)
    ]
    body = _el(
        5,
        "body",
        {},
        _el(6, "h1", {}, _text(7, "Shop")),
        _el(50, "span", {"id": "count"}, _text(51, "0")),
        _el(10, "div", {"class": "grid"}, *cards),
    )
    head = _el(4, "head", {}, _el(8, "style", {}, _text(9, style)))
    dom = {
        "type": 0,
        "childNodes": [
            {"type": 1, "name": "html", "publicId": "", "systemId": "", "id": 2},
            _el(3, "html", {}, head, body),
        ],
        "id": 1,
    }
    events: list[dict[str, Any]] = [
        {"type": 4, "data": {"href": "https://shop.test/", "width": 1280, "height": 800}},
        {"type": 2, "data": {"node": dom, "initialOffset": {"top": 0, "left": 0}}},
    ]
    for e in events:
        e["timestamp"] = T0
    for step in range(1, int(seconds * 10) + 1):
        ts = T0 + step * 100
        x, y = 100 + (step * 37) % 1000, 150 + (step * 23) % 500
        move = {"source": 1, "positions": [{"x": x, "y": y, "id": 5, "timeOffset": 0}]}
        events.append({"type": 3, "data": move, "timestamp": ts})
        if step % 5 == 0:
            change = {"source": 0, "texts": [{"id": 51, "value": str(step)}], "attributes": []}
            events.append(
                {"type": 3, "data": {**change, "removes": [], "adds": []}, "timestamp": ts}
            )
        if step % 20 == 0:
            card = 100 + 2 * ((step // 20) % 16)
            click = {"source": 2, "type": 2, "id": card, "x": x, "y": y, "pointerType": 0}
            events.append({"type": 3, "data": click, "timestamp": ts})
    return events


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _PeakRss:
    """Peak summed PSS of this process and all its descendants, sampled in a thread.

    PSS, not RSS: Chromium's processes share most of their pages, and summed RSS would count
    them once per process.
    """

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_full_info().pss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(0.1)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Render a generated session (2 s quick, 60 s full) and report speed and memory."""
    require_module("playwright", EXTRA)
    require_module("imageio_ffmpeg", EXTRA)
    if chromium_path() is None:
        raise Unavailable("chromium is not installed (apt-get install chromium)")
    tools = render.find_tools()
    seconds = 2.0 if ctx.quick else 60.0
    events = timeline.playable_events(session_events(seconds))
    start, end = events[0]["timestamp"], events[-1]["timestamp"]
    plan = timeline.plan(events, [], start, end, origin_ts=start, entry_url="https://shop.test/")
    out: Path = ctx.scratch("video") / "clip.mp4"
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    with _PeakRss() as rss:
        done = render.render(
            events, plan, out, viewport=(1280, 800), width=960, tools=tools, poster_frame=None
        )
    cpu, wall = _cpu_seconds() - cpu0, time.monotonic() - wall0
    ctx.log(f"{done.duration_s:.1f} s of video, {done.drawn} frames drawn, {cpu:.1f} CPU-s")
    res.add(
        Figure(
            "video_s_per_cpu_s",
            "seconds of video per CPU second",
            done.duration_s / cpu if cpu > 0 else 0.0,
            "s/CPU-s",
            target=at_least(0.1, "renders (a 23 s clip in under 4 CPU-minutes)"),
        )
    )
    res.add(
        Figure(
            "peak_memory_mb",
            "peak memory (PSS, all processes)",
            rss.peak / 1e6,
            "MB",
            higher_is_better=False,
        )
    )
    res.add(Figure("video_s", "video rendered", done.duration_s, "s"))
    res.add(Figure("wall_s", "render wall time", wall, "s", higher_is_better=False))
    res.add(Figure("frames_drawn", "frames drawn", float(done.drawn), "frames"))
    res.add(
        Figure(
            "mb_per_minute",
            "MP4 size per minute of video",
            done.size / 1e6 * 60 / max(done.duration_s, 0.1),
            "MB/min",
            higher_is_better=False,
        )
    )
    res.notes.append(
        "960 px wide, 10 fps, every frame a new picture (pointer moving every 100 ms); CPU of "
        "this process and its children (chromium, ffmpeg) by getrusage; memory as summed PSS."
    )
