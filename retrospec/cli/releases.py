"""`retrospec releases list`: releases per site in first-seen order, with their failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from retrospec import console
from retrospec.cli.common import JsonOpt, SiteOpt, ago, fit_table, load, read
from retrospec.clock import iso

if TYPE_CHECKING:
    from retrospec.issues.releases import ReleaseRow

releases_app = typer.Typer(help="Releases and what each brought.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `releases` to the root CLI."""
    app.add_typer(releases_app, name="releases")


def release_json(r: ReleaseRow) -> dict[str, Any]:
    """One release in `releases list --json`."""
    return {
        "site": {"id": r.site_id, "name": r.site_name},
        "release": r.release,
        "first_seen": iso(r.first_seen_at),
        "last_seen": iso(r.last_seen_at),
        "sessions": r.sessions,
        "failures": r.failures,
        "new_issues": r.new_issues,
        "regressions": r.regressions,
        "source_maps": r.maps,
        "has_source_maps": r.maps > 0,
    }


@releases_app.command("list")
def releases_list(site: SiteOpt = None, json_out: JsonOpt = False) -> None:
    """Releases, newest first (by when RetroSpec first saw them), per site."""
    from retrospec.issues.releases import list_releases
    from retrospec.sites import get_site, list_sites

    settings = load().settings

    def fetch(conn: Any) -> list[ReleaseRow]:
        chosen = [get_site(conn, site)] if site else list_sites(conn)
        return [r for s in chosen for r in list_releases(conn, s.id, s.name)]

    rows = read(settings, fetch)
    if json_out:
        console.print_json(
            {"schema_version": 1, "site": site, "releases": [release_json(r) for r in rows]}
        )
        return
    one_site = site is not None or len({r.site_id for r in rows}) <= 1
    fit_table(
        [
            ("release", {}),
            ("first seen", {"short": "first"}),
            ("last seen", {"short": "last"}),
            ("sessions", {"justify": "right", "short": "sess"}),
            ("failures", {"justify": "right", "short": "fails"}),
            ("new issues", {"justify": "right", "short": "new"}),
            ("regressions", {"justify": "right", "short": "regr"}),
            ("maps", {"justify": "right"}),
            ("site", {}),
        ],
        [
            (
                r.release,
                ago(r.first_seen_at) if r.first_seen_at is not None else "not seen yet",
                ago(r.last_seen_at) if r.last_seen_at is not None else "",
                r.sessions,
                r.failures,
                r.new_issues,
                r.regressions,
                r.maps or "none",
                r.site_name,
            )
            for r in rows
        ],
        flex="release",
        optional=("site",) if one_site else (),
        empty="no releases seen yet; pass `release` to initRetrospec to tag sessions",
    )
