"""`retrospec sessions list|video`: recorded sessions in a terminal, and clips of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retrospec import console
from retrospec.cli.common import (
    JsonOpt,
    SiteOpt,
    ago,
    base_url,
    fit_table,
    load,
    read,
    short_id,
)
from retrospec.clock import now_ms, replay_clock

sessions_app = typer.Typer(help="Recorded browser sessions.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `sessions` to the root CLI."""
    app.add_typer(sessions_app, name="sessions")


@sessions_app.command("list")
def sessions_list(
    site: SiteOpt = None,
    with_failures: Annotated[
        bool, typer.Option("--with-failures", help="Only sessions that hit a failure.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Recorded sessions, most recently active first."""
    from retrospec.replay import queries as replays
    from retrospec.replay.reports import session_json

    settings = load().settings
    items, total = read(
        settings,
        lambda c: replays.list_sessions(c, site=site, with_failures=with_failures, limit=limit),
    )
    if json_out:
        console.print_json(
            {
                "schema_version": 1,
                "site": site,
                "with_failures": with_failures,
                "total": total,
                "sessions": [session_json(s, base_url(settings)) for s in items],
            }
        )
        return
    now = now_ms()
    one_site = site is not None or len({s.site_id for s in items}) <= 1
    fit_table(
        [
            ("session", {}),
            ("user", {}),
            ("browser", {}),
            ("length", {"justify": "right", "short": "len"}),
            ("failures", {"justify": "right", "short": "fails"}),
            ("replay", {}),
            ("last seen", {"short": "seen"}),
            ("site", {"cut": 16}),
        ],
        [
            (
                short_id(s.id),
                s.user_email or s.user_name or s.user_id or "anonymous",
                " · ".join(x for x in (s.browser, s.os) if x),
                replay_clock(s.duration_ms) if s.duration_ms is not None else "",
                s.failures,
                "expired" if s.expired else s.replay_status,
                ago(s.last_seen_at, now),
                s.site_name,
            )
            for s in items
        ],
        flex="user",
        optional=("site", "browser") if one_site else ("browser",),
        empty="no sessions"
        + (" with failures" if with_failures else "")
        + (f" for site {site}" if site else ""),
    )
    if total > len(items):
        console.print_text(f"{len(items)} of {total} sessions; use --limit to see more")


@sessions_app.command("video")
def sessions_video(
    session_id: Annotated[str, typer.Argument(metavar="SESSION_ID", help="The session to render.")],
    out: Annotated[
        Path, typer.Option("--out", help="Video file to write: .mp4 (H.264) or .webm (VP9).")
    ],
    around_failure: Annotated[
        bool,
        typer.Option(
            "--around-failure",
            help="20 s before to 3 s after a failure: FAILURE_ID, else the session's first.",
        ),
    ] = False,
    failure_id: Annotated[
        int | None,
        typer.Argument(
            metavar="FAILURE_ID", min=1, help="With --around-failure: the failure to show."
        ),
    ] = None,
    from_ms: Annotated[
        int | None, typer.Option("--from-ms", min=0, help="Start, ms from the replay start.")
    ] = None,
    to_ms: Annotated[
        int | None, typer.Option("--to-ms", min=0, help="End, ms from the replay start.")
    ] = None,
    speed: Annotated[
        float, typer.Option("--speed", min=0.25, max=16.0, help="Playback speed.")
    ] = 1.0,
    width: Annotated[
        int, typer.Option("--width", min=320, max=1920, help="Video width in pixels.")
    ] = 960,
    json_out: JsonOpt = False,
) -> None:
    """Render a recorded session (or the seconds around a failure) to a video file."""
    from retrospec.errors import UsageError
    from retrospec.storage.blobs import BlobStore
    from retrospec.video.clip import (
        AROUND_FIRST,
        ClipRequest,
        check_output,
        load_source,
        make_clip,
    )
    from retrospec.video.render import find_tools

    # `--around-failure [FAILURE_ID]`: the parser has no option with an optional value, so the
    # id is an optional argument that only --around-failure gives a meaning.
    if failure_id is not None and not around_failure:
        raise UsageError("FAILURE_ID goes with --around-failure")
    if around_failure and failure_id is None:
        failure_id = AROUND_FIRST
    settings = load().settings
    request = ClipRequest(
        session_id=session_id,
        out=out,
        failure_id=failure_id,
        from_ms=from_ms,
        to_ms=to_ms,
        speed=speed,
        width=width,
    )
    check_output(request)
    blobs = BlobStore(settings.effective_blob_url)
    # Read, then render with no connection open: a render takes seconds.
    source = read(settings, lambda c: load_source(c, blobs, session_id))
    result = make_clip(source, request, find_tools(settings.chromium or None))
    if json_out:
        console.print_json(result)
        return
    console.print_text(
        f"wrote {out} ({result['duration_s']:.1f} s, {result['frames']} frames, "
        f"{result['bytes'] // 1024} KiB; replay {replay_clock(result['from_ms'])}"
        f"-{replay_clock(result['to_ms'])})"
    )
