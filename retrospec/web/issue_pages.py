"""The issue list (/) and the issue page (/issues/{id}) with its resolve/ignore/reopen actions."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from retrospec.errors import BadRequest, NotFound
from retrospec.ingest.envelope import FAILURE_KINDS
from retrospec.issues import merge as merging
from retrospec.issues import queries as issues
from retrospec.issues.evidence import get_evidence
from retrospec.issues.reports import evidence_markdown, replay_url
from retrospec.sites import Site, list_sites
from retrospec.web.access import redirect, runtime
from retrospec.web.render import is_fragment_request, page

PAGE_SIZE = 50
STATUS_TABS = (
    ("open", "Open"),
    ("resolved", "Resolved"),
    ("ignored", "Ignored"),
    ("all", "All"),
    ("candidate", "Candidates"),
)
SORT_CHOICES = (
    ("last_seen", "Last seen"),
    ("failures", "Most failures"),
    ("sessions", "Most sessions"),
    ("first_seen", "Newest"),
)
KIND_LABELS = {
    "error": "Error",
    "unhandledrejection": "Unhandled rejection",
    "network": "Network",
    "console": "Console",
    "custom": "Custom",
}
ACTION_LABELS = {"resolve": "Resolve", "ignore": "Ignore", "reopen": "Reopen"}


@dataclass(frozen=True, slots=True)
class IssueFilters:
    """The issue list's query string, cleaned (unknown values fall back to defaults)."""

    site: str = ""
    status: str = "open"
    kind: str = ""
    q: str = ""
    sort: str = "last_seen"
    page: int = 1

    @classmethod
    def parse(cls, params: Any) -> IssueFilters:
        """From request.query_params (a multi-dict of strings)."""
        status = params.get("status") or "open"
        sort = params.get("sort") or "last_seen"
        kind = params.get("kind") or ""
        try:
            number = max(1, min(10_000, int(params.get("page") or 1)))
        except ValueError:
            number = 1
        return cls(
            site=(params.get("site") or "").strip()[:100],
            status=status if status in issues.STATUSES else "open",
            kind=kind if kind in FAILURE_KINDS else "",
            q=(params.get("q") or "").strip()[:200],
            sort=sort if sort in issues.SORTS else "last_seen",
            page=number,
        )

    def as_query(self) -> dict[str, Any]:
        """Non-default values, for links that keep the filters."""
        values: dict[str, Any] = {
            "site": self.site,
            "status": "" if self.status == "open" else self.status,
            "kind": self.kind,
            "q": self.q,
            "sort": "" if self.sort == "last_seen" else self.sort,
            "page": "" if self.page == 1 else self.page,
        }
        return {k: v for k, v in values.items() if v}

    @property
    def narrowed(self) -> bool:
        """Whether anything besides status and sort narrows the list."""
        return bool(self.site or self.kind or self.q)


async def _sites(request: Request[Any, Any, Any]) -> list[Site]:
    return await runtime(request).reads.run(list_sites)


@get("/", name="issues")
async def issue_list(request: Request[Any, Any, Any]) -> Response[str]:
    """Issues with filters, search, sort, pages and sparklines; htmx polls the list part."""
    rt = runtime(request)
    f = IssueFilters.parse(request.query_params)
    offset = (f.page - 1) * PAGE_SIZE

    def read(conn: sqlite3.Connection) -> tuple[list[Any], int, dict[int, list[int]], bool, int]:
        anything, candidates = True, 0
        try:
            items, total = issues.list_issues(
                conn,
                site=f.site or None,
                status=f.status,
                kind=f.kind or None,
                q=f.q or None,
                sort=f.sort,
                limit=PAGE_SIZE,
                offset=offset,
            )
        except NotFound:  # a site filter for a site that was renamed or never existed
            items, total = [], 0
        daily = issues.daily_counts(conn, [i.id for i in items], days=7)
        if not items:
            # Empty states differ: a brand-new install, a quiet week, or over-narrow filters.
            _, issue_total = issues.list_issues(conn, status="all", limit=1)
            _, candidates = issues.list_issues(conn, status="candidate", limit=1)
            anything = bool(issue_total or candidates)
        return items, total, daily, anything, candidates

    items, total, daily, anything, candidates = await rt.reads.run(read)
    # The poller's fragment has no site picker; only its onboarding state needs the sites.
    sites = [] if is_fragment_request(request) and items else await _sites(request)
    context = {
        "section": "issues",
        "f": f,
        "query_args": f.as_query(),
        "items": items,
        "total": total,
        "daily": daily,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "anything": anything,
        "candidates": candidates,
        "sites": sites,
        "user_sites": [s for s in sites if s.id != "demo"],
        "status_tabs": STATUS_TABS,
        "sort_choices": SORT_CHOICES,
        "kind_labels": KIND_LABELS,
        "promote_after": rt.settings.promote_after,
    }
    return page(request, "issues.html", context, fragment="_issue_list.html")


def _base_url(request: Request[Any, Any, Any]) -> str:
    # public_url, else the address `serve` listens on: never the request's Host header, which
    # the client chooses (a forged one would end up in links people copy).
    return runtime(request).settings.base_url


def _status_context(issue: issues.IssueSummary) -> dict[str, Any]:
    actions = [
        name for name, (allowed, _new, _event) in issues.ACTIONS.items() if issue.status in allowed
    ]
    return {"issue": issue, "actions": actions, "action_labels": ACTION_LABELS}


@get("/issues/{issue_id:int}")
async def issue_page(request: Request[Any, Any, Any], issue_id: FromPath[int]) -> Response[str]:
    """All the evidence of one issue."""
    return await _issue_page(request, issue_id)


async def _issue_page(
    request: Request[Any, Any, Any],
    issue_id: int,
    *,
    merge_note: str | None = None,
) -> Response[str]:
    rt = runtime(request)
    ev = await rt.reads.run(get_evidence, issue_id)
    base = _base_url(request)
    frames = ev.frames
    in_app = sum(1 for fr in frames if fr.get("in_app"))
    context = {
        "mapped_count": sum(1 for fr in frames if fr.get("mapped")),
        "section": "issues",
        "ev": ev,
        "markdown": evidence_markdown(ev, base),
        "replay_link": replay_url(ev, ""),
        "in_app_count": in_app,
        "kind_labels": KIND_LABELS,
        "merge_note": merge_note,
        **_status_context(ev.issue),
    }
    return page(request, "issue.html", context)


@post("/issues/{issue_id:int}/status", status_code=200)
async def issue_status(request: Request[Any, Any, Any], issue_id: FromPath[int]) -> Response[str]:
    """Resolve, ignore or reopen; htmx swaps the status block, plain forms get the page."""
    rt = runtime(request)
    form = await request.form()
    action = form.get("action")
    if not isinstance(action, str) or (action not in issues.ACTIONS and action != "resolve_next"):
        raise BadRequest("unknown action")
    actor = request.state.login.username
    next_release = action == "resolve_next"
    await rt.writer.run(
        lambda c: issues.change_status(
            c,
            issue_id,
            "resolve" if next_release else action,
            actor=actor,
            in_next_release=next_release,
        )
    )
    if request.headers.get("hx-request") != "true":
        return redirect(f"/issues/{issue_id}")
    issue = await rt.reads.run(issues.get_issue, issue_id)
    context = {**_status_context(issue), "changed": action}
    return page(
        request,
        "_issue_status.html",
        context,
        headers={"hx-trigger": "issue-status-changed"},
    )


_IDS = re.compile(r"[\s,;#]+")
MAX_MERGE_SOURCES = 100


def _issue_ids(text: object) -> list[int]:
    """Issue ids typed into the merge form ("12, 15 #17"); BadRequest for anything else."""
    if not isinstance(text, str):
        raise BadRequest("name the issues to merge by their ids")
    parts = [p for p in _IDS.split(text.strip()) if p]
    if not parts or any(not p.isdecimal() or len(p) > 12 for p in parts):
        raise BadRequest("issue ids are numbers, like 12, 15")
    if len(parts) > MAX_MERGE_SOURCES:
        raise BadRequest(f"merge at most {MAX_MERGE_SOURCES} issues at once")
    return [int(p) for p in parts]


async def _merge_action(
    request: Request[Any, Any, Any], issue_id: int, field: str, undo: bool
) -> Response[str]:
    rt = runtime(request)
    form = await request.form()
    actor = request.state.login.username
    htmx = request.headers.get("hx-request") == "true"
    fn = merging.unmerge if undo else merging.merge
    # Bad ids or a refused merge answer 400 (htmx shows it as a toast, as for status actions).
    sources = _issue_ids(form.get(field))
    result = await rt.writer.run(lambda c: fn(c, issue_id, sources, actor))
    if not htmx:
        return redirect(f"/issues/{issue_id}")
    ids = ", ".join(f"#{s}" for s in result.sources)
    note = f"Unmerged {ids}." if undo else f"Merged {ids} into this issue."
    return await _issue_page(request, issue_id, merge_note=note)


@post("/issues/{issue_id:int}/merge", status_code=200)
async def issue_merge(request: Request[Any, Any, Any], issue_id: FromPath[int]) -> Response[str]:
    """Merge the issues named in the form into this one; htmx swaps the page's main part."""
    return await _merge_action(request, issue_id, "sources", undo=False)


@post("/issues/{issue_id:int}/unmerge", status_code=200)
async def issue_unmerge(request: Request[Any, Any, Any], issue_id: FromPath[int]) -> Response[str]:
    """Take one merged issue (form field `source`) back out of this one."""
    return await _merge_action(request, issue_id, "source", undo=True)


HANDLERS = [issue_list, issue_page, issue_status, issue_merge, issue_unmerge]
