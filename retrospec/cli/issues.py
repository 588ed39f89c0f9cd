"""`retrospec issues ...`: the dashboard's issue list and evidence in a terminal.

Reads call the same query functions the dashboard awaits (issues/queries.py, issues/evidence.py)
on one read-only connection; status changes go through change_status in a short write
transaction, which is safe while `retrospec serve` runs (WAL plus a busy timeout).
"""

from __future__ import annotations

import getpass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from retrospec import console
from retrospec.cli.common import (
    JsonOpt,
    SiteOpt,
    ago,
    base_url,
    fit_table,
    load,
    one_line,
    read,
    require_db,
    short_id,
)
from retrospec.clock import iso, now_ms, replay_clock
from retrospec.errors import UsageError

if TYPE_CHECKING:
    from retrospec.issues.evidence import Evidence

T = TypeVar("T")

issues_app = typer.Typer(
    help="Grouped front-end failures: list, inspect, resolve.", no_args_is_help=True
)

IssueId = Annotated[int, typer.Argument(help="Issue id, as `retrospec issues list` shows it.")]


class StatusChoice(StrEnum):
    """Issue statuses `issues list` filters on ("all" = every issue, candidates excluded)."""

    open = "open"
    resolved = "resolved"
    ignored = "ignored"
    candidate = "candidate"
    all = "all"


def register(app: typer.Typer) -> None:
    """Add `issues` to the root CLI."""
    app.add_typer(issues_app, name="issues")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


# --- issues ----------------------------------------------------------------------------------


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
    from retrospec.issues import queries as issues
    from retrospec.issues.reports import issue_json

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
                "issues": [issue_json(i, base_url(settings)) for i in items],
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
            ("site", {"cut": 16}),
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
                i.site_name,
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
    from retrospec.issues.evidence import get_evidence
    from retrospec.issues.reports import evidence_json, evidence_markdown

    if json_out and markdown:
        raise UsageError("choose one of --json and --markdown")
    settings = load().settings
    ev = read(settings, lambda c: get_evidence(c, issue_id))
    base = base_url(settings)
    if json_out:
        console.print_json(evidence_json(ev, base))
    elif markdown:
        console.print_markdown_source(evidence_markdown(ev, base))
    else:
        _print_evidence(ev, base)


def replay_line(ev: Evidence, base: str) -> str:
    """Where to watch the failure, or why there is nothing to watch (expired is not an error)."""
    from retrospec.issues.reports import replay_url

    rep = ev.representative
    if rep is None:
        return "no session recorded"
    if rep.expired:
        return (
            f"expired — session {rep.session_id} is older than the retention period "
            "(the issue, its counts and the failure summaries are kept)"
        )
    url = replay_url(ev, base)
    if url is None:
        return f"not playable (replay {rep.replay_status}); session {rep.session_id}"
    at = f" ({replay_clock(rep.offset_ms)} into the session)" if rep.offset_ms is not None else ""
    return url + at


def clip_line(ev: Evidence, base: str) -> str:
    """The rendered clip's link, or why there is none."""
    from retrospec.issues.reports import clip_url

    clip = ev.clip
    url = clip_url(ev, base)
    if clip is None or url is None:
        why = (clip.reason if clip is not None else None) or "no clip"
        return "expired with the replay" if clip and clip.status == "expired" else why
    seconds = (clip.duration_ms or 0) / 1000
    return f"{url} ({seconds:.0f} s, {max(1, clip.video_bytes // 1024)} KiB)"


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
    rel = ev.releases
    if rel is not None and (rel.first or rel.last):
        note = f" · resolved in the release after {rel.resolved_in}" if rel.resolved_in else ""
        pairs.append(("releases", f"first {rel.first or '?'} · last {rel.last or '?'}{note}"))
    pairs.append(("confidence", f"{ev.confidence.label} — {'; '.join(ev.confidence.reasons)}"))
    pairs.append(("replay", replay_line(ev, base)))
    if ev.clip is not None:
        pairs.append(("video", clip_line(ev, base)))
    pairs.append(("dashboard", f"{base}/issues/{issue.id}"))
    console.print_pairs(pairs)

    console.print_text("")
    console.print_text("Steps before the failure", style="bold")
    if ev.steps:
        for n, step in enumerate(ev.steps, 1):
            verb = step.verb
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
    if any(f.get("mapped") for f in ev.frames):
        from retrospec.issues.reports import frames_text

        console.print_text("  source-mapped (the raw stack is in --json):")
        for line in frames_text(ev.frames[:40]).splitlines():
            console.print_text("  " + line.strip() if not line.startswith("        ") else line)
    elif ev.stack:
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
                replay_clock(s.offset_ms) if s.offset_ms is not None else "",
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
            what = f"{h.action} #{h.detail}" if h.detail else h.action
            console.print_text(f"  {(iso(h.at) or '')[:16].replace('T', ' ')} {what}{who}")
    if ev.merged_into is not None:
        console.print_text("")
        console.print_text(f"Merged into issue {ev.merged_into}", style="bold")
    if ev.merged:
        console.print_text("")
        console.print_text("Merged into this issue", style="bold")
        for mid, title in ev.merged:
            console.print_text(f"  {mid}: {one_line(title, 200)}")


def _change(issue_id: int, action: str, *, in_next_release: bool = False) -> None:
    from retrospec.cli.common import with_db
    from retrospec.issues import queries as issues

    loaded = load()
    require_db(loaded.settings)
    new = with_db(
        loaded,
        lambda c: issues.change_status(
            c, issue_id, action, _actor(), in_next_release=in_next_release
        ),
        write=True,
    )
    note = " in the next release" if in_next_release else ""
    console.success(f"issue {issue_id} is now {new}{note}")


@issues_app.command("resolve")
def issues_resolve(
    issue_id: IssueId,
    in_next_release: Annotated[
        bool,
        typer.Option(
            "--in-next-release",
            help="Fixed in the release after the newest one seen: failures from that release "
            "or older ones do not reopen it, a failure from a newer release does.",
        ),
    ] = False,
) -> None:
    """Mark an issue resolved (it reopens as a regression if it happens again)."""
    _change(issue_id, "resolve", in_next_release=in_next_release)


@issues_app.command("ignore")
def issues_ignore(issue_id: IssueId) -> None:
    """Ignore an issue (it stays counted but leaves the open list)."""
    _change(issue_id, "ignore")


@issues_app.command("reopen")
def issues_reopen(issue_id: IssueId) -> None:
    """Reopen a resolved or ignored issue."""
    _change(issue_id, "reopen")


SourceIds = Annotated[
    list[int], typer.Argument(help="Issue ids to merge into TARGET (or to take back out of it).")
]
TargetId = Annotated[int, typer.Argument(help="The issue that keeps its id.")]


def _merge_json(result: Any, action: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "action": action,
        "target": result.target,
        "sources": list(result.sources),
        "failures_moved": result.failures_moved,
    }


@issues_app.command("merge")
def issues_merge(target: TargetId, sources: SourceIds, json_out: JsonOpt = False) -> None:
    """Merge issues into TARGET: their failures, counts and future failures join it."""
    from retrospec.cli.common import with_db
    from retrospec.issues.merge import merge

    loaded = load()
    require_db(loaded.settings)
    result = with_db(loaded, lambda c: merge(c, target, sources, _actor()), write=True)
    if json_out:
        console.print_json(_merge_json(result, "merge"))
        return
    names = ", ".join(str(s) for s in result.sources)
    console.success(f"merged {names} into issue {target} ({result.failures_moved} failures moved)")


@issues_app.command("unmerge")
def issues_unmerge(target: TargetId, sources: SourceIds, json_out: JsonOpt = False) -> None:
    """Undo merges: each SOURCE leaves TARGET with its own failures and its old status."""
    from retrospec.cli.common import with_db
    from retrospec.issues.merge import unmerge

    loaded = load()
    require_db(loaded.settings)
    result = with_db(loaded, lambda c: unmerge(c, target, sources, _actor()), write=True)
    if json_out:
        console.print_json(_merge_json(result, "unmerge"))
        return
    names = ", ".join(str(s) for s in result.sources)
    console.success(
        f"unmerged {names} from issue {target} ({result.failures_moved} failures moved back)"
    )
