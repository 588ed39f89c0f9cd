"""`retrospec sessions list`: recorded sessions in a terminal, from the dashboard's queries."""

from __future__ import annotations

from typing import Annotated

import typer

from retrospec import console
from retrospec.cli.common import (
    JsonOpt,
    SiteOpt,
    ago,
    fit_table,
    load,
    one_line,
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
                "sessions": [session_json(s, settings.base_url) for s in items],
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
            ("site", {}),
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
                one_line(s.site_name, 16),
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
