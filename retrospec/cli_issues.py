"""`retrospec issues ...` and `retrospec sessions list`: the dashboard's evidence in a terminal.

Reads go through the same async query functions the dashboard uses (issues.py, replays.py) on
one aiosqlite connection; status changes go through issues.change_status on a short write
transaction, which is safe while `retrospec serve` runs (WAL plus a busy timeout).
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from retrospec import console
from retrospec.clock import iso, now_ms
from retrospec.errors import NotFound, UsageError
from retrospec.settings import LoadedSettings, Settings

if TYPE_CHECKING:
    import aiosqlite

    from retrospec.evidence import Evidence

T = TypeVar("T")

issues_app = typer.Typer(
    help="Grouped front-end failures: list, inspect, resolve.", no_args_is_help=True
)
sessions_app = typer.Typer(help="Recorded browser sessions.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]
SiteOpt = Annotated[str | None, typer.Option("--site", help="Only this site (name or id).")]
IssueId = Annotated[int, typer.Argument(help="Issue id, as `retrospec issues list` shows it.")]
WIDE = 110  # terminal width from which tables show whole session ids
TITLE_CHARS = 120  # before rich fits the title column to the terminal with an ellipsis


class StatusChoice(StrEnum):
    """Issue statuses `issues list` filters on ("all" = every issue, candidates excluded)."""

    open = "open"
    resolved = "resolved"
    ignored = "ignored"
    candidate = "candidate"
    all = "all"


def register(app: typer.Typer) -> None:
    """Add `issues` and `sessions` to the root CLI."""
    app.add_typer(issues_app, name="issues")
    app.add_typer(sessions_app, name="sessions")


# --- shared helpers (cli_ops uses them too) ---------------------------------------------------


def load() -> LoadedSettings:
    """Settings for this invocation (root --config, environment, file, defaults)."""
    from retrospec.cli import settings_from_cli

    return settings_from_cli()


def require_db(settings: Settings) -> None:
    """Fail with a hint instead of creating an empty database in the wrong directory."""
    from retrospec.migrations import prepare_database

    if not settings.db_path.exists():
        raise NotFound(
            f"no RetroSpec database at {settings.db_path}; run this where retrospec.toml is, "
            "or pass --config / set RETROSPEC_DATA_DIR"
        )
    prepare_database(settings.db_path, synchronous=settings.sqlite_synchronous)


def read(settings: Settings, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
    """Run an async read query on one read connection."""
    from retrospec.db import open_reader

    require_db(settings)

    async def go() -> T:
        async with open_reader(settings.db_path) as conn:
            return await fn(conn)

    return asyncio.run(go())


def ago(ms: int | None, now: int | None = None) -> str:
    """'just now', '42s ago', '3m ago', '5h ago', '2d ago', then a date."""
    if ms is None:
        return ""
    seconds = ((now_ms() if now is None else now) - ms) / 1000
    if seconds < 5:
        return "just now"  # also absorbs small clock differences between processes
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    if seconds < 60 * 86400:
        return f"{int(seconds // 86400)}d ago"
    return (iso(ms) or "")[:10]


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KB' (powers of 1024, like du -h)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def duration(ms: int | None) -> str:
    """65000 -> '1:05' (replay clock)."""
    if ms is None:
        return ""
    seconds = max(0, int(ms)) // 1000
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def short_id(value: str) -> str:
    """A session id as tables show it: whole on wide terminals, its first 8 characters at 80."""
    return value if int(console.out.width) >= WIDE or len(value) <= 13 else value[:8]


def one_line(text: str | None, limit: int = TITLE_CHARS) -> str:
    """Collapse whitespace (stack-ish titles carry newlines) and cap the length."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


Column = tuple[str, dict[str, Any]]


def fit_table(
    columns: list[Column],
    rows: list[tuple[Any, ...]],
    *,
    flex: str,
    optional: tuple[str, ...] = (),
    comfortable: int = 40,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print a table at the terminal's width (80 when piped) with one column taking the rest.

    rich squeezes every no_wrap column alike when a table is too wide, so the other columns get
    their content width here and only the flex column is cut, with an ellipsis. While the flex
    column is narrower than `comfortable`, headers switch to their "short" form and `optional`
    columns are dropped, in order.
    """
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    fi = [name for name, _ in columns].index(flex)
    names = [name for name, _ in columns]
    keep = list(range(len(columns)))

    def room() -> int:
        widths = (max([len(names[i]), *(len(r[i]) for r in cells)]) for i in keep if i != fi)
        return int(console.out.width) - sum(widths) - 3 * (len(keep) - 1)

    if room() < comfortable:
        names = [opts.get("short", name) for name, opts in columns]
    for name in optional:
        if room() >= comfortable:
            break
        keep.remove([n for n, _ in columns].index(name))
    width = min(max(12, room()), max([len(names[fi]), *(len(r[fi]) for r in cells)]))
    out_columns: list[Column] = []
    for i in keep:
        opts = {"no_wrap": True, **{k: v for k, v in columns[i][1].items() if k != "short"}}
        if i == fi:
            opts.update(min_width=width, max_width=width, overflow="ellipsis")
        out_columns.append((names[i], opts))
    out_rows = [tuple(one_line(r[i], width) if i == fi else r[i] for i in keep) for r in cells]
    console.print_table(out_columns, out_rows, title=title, empty=empty)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


# --- issues ----------------------------------------------------------------------------------


def issue_json(issue: Any, base_url: str) -> dict[str, Any]:
    """One row of `issues list --json`."""
    from retrospec.evidence import summary_json

    return {**summary_json(issue), "url": f"{base_url}/issues/{issue.id}"}


@issues_app.command("list")
def issues_list(
    site: SiteOpt = None,
    status: Annotated[
        StatusChoice, typer.Option("--status", help="Which issues (all = every non-candidate).")
    ] = StatusChoice.open,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Issues, most recently seen first."""
    from retrospec import issues

    settings = load().settings
    items, total = read(
        settings,
        lambda c: issues.list_issues(c, site=site, status=status.value, limit=limit),
    )
    if json_out:
        console.print_json(
            {
                "schema_version": 1,
                "status": status.value,
                "site": site,
                "total": total,
                "issues": [issue_json(i, settings.base_url) for i in items],
            }
        )
        return
    now = now_ms()
    what = "issues" if status is StatusChoice.all else f"{status.value} issues"
    one_site = site is not None or len({i.site_id for i in items}) <= 1
    fit_table(
        [
            ("id", {"justify": "right"}),
            ("status", {}),
            ("title", {}),
            ("failures", {"justify": "right", "short": "fails"}),
            ("sessions", {"justify": "right", "short": "sess"}),
            ("users", {"justify": "right"}),
            ("last seen", {"short": "seen"}),
            ("site", {}),
        ],
        [
            (
                i.id,
                "regressed" if i.regression and i.status == "open" else i.status,
                i.title,
                i.failure_count,
                i.session_count,
                i.user_count,
                ago(i.last_seen_at, now),
                one_line(i.site_name, 16),
            )
            for i in items
        ],
        flex="title",
        optional=("site",) if one_site else (),
        empty=f"no {what}" + (f" for site {site}" if site else ""),
    )
    if total > len(items):
        console.print_text(f"{len(items)} of {total} {what}; use --limit to see more")


@issues_app.command("show")
def issues_show(
    issue_id: IssueId,
    json_out: JsonOpt = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="A report ready to paste into a bug tracker.")
    ] = False,
) -> None:
    """An issue's evidence: message, stack, steps before the failure, replay link, where."""
    from retrospec import issues

    if json_out and markdown:
        raise UsageError("choose one of --json and --markdown")
    settings = load().settings
    ev = read(settings, lambda c: issues.get_evidence(c, issue_id))
    base = settings.base_url
    if json_out:
        console.print_json(issues.evidence_json(ev, base))
    elif markdown:
        console.print_markdown_source(issues.evidence_markdown(ev, base))
    else:
        _print_evidence(ev, base)


def replay_line(ev: Evidence, base: str) -> str:
    """Where to watch the failure, or why there is nothing to watch (expired is not an error)."""
    from retrospec import issues

    rep = ev.representative
    if rep is None:
        return "no session recorded"
    if rep.expired:
        return (
            f"expired — session {rep.session_id} is older than the retention period "
            "(the issue, its counts and the failure summaries are kept)"
        )
    url = issues.replay_url(ev, base)
    if url is None:
        return f"not playable (replay {rep.replay_status}); session {rep.session_id}"
    at = f" ({duration(rep.offset_ms)} into the session)" if rep.offset_ms is not None else ""
    return url + at


_STEP_VERBS = {
    "click": "clicked",
    "rage_click": "rage-clicked",
    "navigation": "went to",
    "input": "typed into",
}


def _print_evidence(ev: Evidence, base: str) -> None:
    issue = ev.issue
    now = now_ms()
    status = issue.status + (" (regression)" if issue.regression else "")
    console.print_text(f"Issue {issue.id}: {one_line(issue.title, 500)}", style="bold")
    pairs: list[tuple[str, Any]] = [
        ("status", f"{status} · {issue.kind} · site {issue.site_name}"),
        (
            "seen",
            f"{issue.failure_count} failures in {issue.session_count} sessions by "
            f"{issue.user_count} users",
        ),
        ("first/last", f"{ago(issue.first_seen_at, now)} / {ago(issue.last_seen_at, now)}"),
    ]
    if ev.message and one_line(ev.message, 500) != one_line(issue.title, 500):
        pairs.append(("message", one_line(ev.message, 500)))
    if issue.culprit:
        pairs.append(("culprit", issue.culprit))
    pairs.append(("confidence", f"{ev.confidence.label} — {'; '.join(ev.confidence.reasons)}"))
    pairs.append(("replay", replay_line(ev, base)))
    pairs.append(("dashboard", f"{base}/issues/{issue.id}"))
    console.print_pairs(pairs)

    console.print_text("")
    console.print_text("Steps before the failure", style="bold")
    if ev.steps:
        for n, step in enumerate(ev.steps, 1):
            verb = _STEP_VERBS.get(step.kind, step.kind)
            console.print_text(
                f"  {n}. {verb} {one_line(step.label, 200)} ({step.seconds_before:g} s before)"
            )
        console.print_text(f"  {len(ev.steps) + 1}. the failure happens")
    else:
        console.print_text("  no recorded user actions before the failure")
    agreement = ev.last_step_agreement
    if agreement is not None:
        console.print_text(
            f"  {agreement.matching_sessions} of {agreement.sessions_considered} affected "
            f"sessions share the last step {one_line(agreement.label, 200)}"
        )

    console.print_text("")
    console.print_text("Stack", style="bold")
    if ev.stack:
        for line in ev.stack.rstrip().splitlines()[:40]:
            console.print_text("  " + line.rstrip())
    elif ev.frames:
        console.print_text("  raw stack purged (past retention); normalised frames:")
        for f in ev.frames[:40]:
            where = f.get("path") or f.get("raw_file") or "?"
            vendor = "" if f.get("in_app") else "  [vendor]"
            console.print_text(f"  at {f.get('function') or '<anonymous>'} ({where}){vendor}")
    else:
        console.print_text("  no stack trace")

    console.print_text("")
    console.print_text("Where it happens", style="bold")
    names = {"browser": "browsers", "os": "os", "url": "urls", "release": "releases"}
    console.print_pairs(
        (
            names.get(facet, facet),
            ", ".join(f"{v} ({n})" for v, n in values) if values else "unknown",
        )
        for facet, values in ev.top.items()
    )

    console.print_text("")
    shown = ev.sessions[:10]
    fit_table(
        [
            ("session", {}),
            ("user", {}),
            ("browser", {}),
            ("fails", {"justify": "right"}),
            ("at", {}),
            ("replay", {}),
            ("last seen", {"short": "seen"}),
        ],
        [
            (
                short_id(s.session_id),
                s.user or "",
                " · ".join(x for x in (s.browser, s.os) if x),
                s.failures,
                duration(s.offset_ms),
                "expired" if s.expired else s.replay_status,
                ago(s.last_seen_at, now),
            )
            for s in shown
        ],
        flex="user",
        optional=("browser",),
        title=f"Affected sessions ({len(shown)} of {issue.session_count})",
        empty="no affected sessions recorded",
    )
    if ev.history:
        console.print_text("")
        console.print_text("History", style="bold")
        for h in ev.history:
            who = f" by {h.actor}" if h.actor else ""
            console.print_text(f"  {(iso(h.at) or '')[:16].replace('T', ' ')} {h.action}{who}")


def _change(issue_id: int, action: str) -> None:
    from retrospec import issues
    from retrospec.cli import with_db

    loaded = load()
    require_db(loaded.settings)
    new = with_db(loaded, lambda c: issues.change_status(c, issue_id, action, _actor()), write=True)
    console.success(f"issue {issue_id} is now {new}")


@issues_app.command("resolve")
def issues_resolve(issue_id: IssueId) -> None:
    """Mark an issue resolved (it reopens as a regression if it happens again)."""
    _change(issue_id, "resolve")


@issues_app.command("ignore")
def issues_ignore(issue_id: IssueId) -> None:
    """Ignore an issue (it stays counted but leaves the open list)."""
    _change(issue_id, "ignore")


@issues_app.command("reopen")
def issues_reopen(issue_id: IssueId) -> None:
    """Reopen a resolved or ignored issue."""
    _change(issue_id, "reopen")


# --- sessions --------------------------------------------------------------------------------


def session_json(s: Any, base_url: str) -> dict[str, Any]:
    """One row of `sessions list --json`."""
    playable = not s.expired and s.replay_status in ("ready", "pending")
    return {
        "id": s.id,
        "site": {"id": s.site_id, "name": s.site_name},
        "started_at": iso(s.started_at),
        "last_seen": iso(s.last_seen_at),
        "user": {"id": s.user_id, "email": s.user_email, "name": s.user_name},
        "user_key": s.user_key,
        "browser": s.browser,
        "os": s.os,
        "entry_url": s.entry_url,
        "last_url": s.last_url,
        "release": s.release,
        "environment": s.environment,
        "failures": s.failures,
        "replay": {
            "status": s.replay_status,
            "reason": s.replay_reason,
            "expired": s.expired,
            "duration_ms": s.duration_ms,
            "active_ms": s.active_ms,
            "pages": list(s.pages or []),
            "clicks": s.clicks,
            "rage_clicks": s.rage_clicks,
            "url": f"{base_url}/sessions/{s.id}" if playable else None,
        },
    }


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
    from retrospec import replays

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
                duration(s.duration_ms),
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
