"""/sites: add a site, edit its allowed origins, show the embed snippet and DSN, rotate its key,
create an upload token, switch source map fetching; /sites/{id}/releases: the site's releases."""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from retrospec import sites
from retrospec.clock import now_ms
from retrospec.errors import BadRequest, Conflict
from retrospec.ingest.sentry.stats import item_counts
from retrospec.issues.releases import ReleaseRow, list_releases
from retrospec.web.access import redirect, runtime
from retrospec.web.render import page

KEY_PLACEHOLDER = "YOUR_INGEST_KEY"
COUNT_DAYS = 7  # Sentry items counted over this many days, on each card


@dataclass(frozen=True, slots=True)
class SiteCard:
    """One site as the page shows it; `key` is set only right after creation or rotation."""

    site: sites.Site
    key_prefixes: list[str]
    key: str | None = None
    is_demo: bool = False
    upload_token: str | None = None  # set only right after it was created
    sentry_counts: dict[str, int] | None = None  # Sentry items taken but not stored, by type

    def dsn(self, base: str) -> str | None:
        """The site's Sentry DSN for a server reached at base (public: always shown)."""
        return sites.dsn(self.site, base)


def _counts(conn: sqlite3.Connection, site_id: str) -> dict[str, int]:
    return item_counts(conn, site_id, now_ms() - COUNT_DAYS * 86_400_000)


def _cards(conn: sqlite3.Connection) -> list[SiteCard]:
    return [
        SiteCard(
            s,
            sites.key_prefixes(conn, s.id),
            is_demo=s.id == sites.DEMO_SITE_ID,
            sentry_counts=_counts(conn, s.id),
        )
        for s in sites.list_sites(conn)
    ]


def _card(conn: sqlite3.Connection, site_id: str, key: str | None = None) -> SiteCard:
    site = sites.get_site(conn, site_id)
    return SiteCard(
        site,
        sites.key_prefixes(conn, site.id),
        key=key,
        is_demo=site.id == sites.DEMO_SITE_ID,
        sentry_counts=_counts(conn, site.id),
    )


def base_url(request: Request[Any, Any, Any]) -> str:
    """Where browsers reach this server: public_url, else the address `serve` listens on.

    Never the request's Host header: the client chooses it, and snippets get copied.
    """
    return runtime(request).settings.base_url


def _origins(text: str) -> list[str]:
    # One per line, or separated by commas/spaces: people paste lists in every shape.
    return [part for part in text.replace(",", " ").split() if part]


def _page(
    request: Request[Any, Any, Any],
    cards: list[SiteCard],
    *,
    error: str = "",
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response[str]:
    context = {
        "section": "sites",
        "cards": cards,
        "base": base_url(request),
        "placeholder": KEY_PLACEHOLDER,
        "error": error,
        "form": form or {"name": "", "origins": ""},
    }
    return page(request, "sites.html", context, fragment="_site_list.html", status_code=status_code)


@get("/sites", name="sites")
async def site_list(request: Request[Any, Any, Any]) -> Response[str]:
    """Every site with its snippet (key placeholder: keys are only shown once)."""
    return _page(request, await runtime(request).reads.run(_cards))


@post("/sites", status_code=200)
async def site_add(request: Request[Any, Any, Any]) -> Response[str]:
    """Create a site and show its key and snippet once."""
    rt = runtime(request)
    form = await request.form()
    name = str(form.get("name") or "").strip()
    origins_text = str(form.get("origins") or "")
    try:
        site, key = await rt.writer.run(
            lambda c: sites.create_site(c, name, _origins(origins_text))
        )
    except (BadRequest, Conflict) as exc:
        cards = await rt.reads.run(_cards)
        return _page(
            request,
            cards,
            error=exc.message,
            form={"name": name, "origins": origins_text},
            status_code=exc.http_status,
        )
    rt.keys.clear()
    cards = await rt.reads.run(_cards)
    cards = [dataclasses.replace(c, key=key) if c.site.id == site.id else c for c in cards]
    return _page(request, cards)


def _card_response(
    request: Request[Any, Any, Any], card: SiteCard, *, notice: str = "", error: str = ""
) -> Response[str]:
    context = {
        "card": card,
        "base": base_url(request),
        "placeholder": KEY_PLACEHOLDER,
        "notice": notice,
        "error": error,
    }
    return page(request, "_site_card.html", context)


@post("/sites/{site_id:str}/origins", status_code=200)
async def site_origins(request: Request[Any, Any, Any], site_id: FromPath[str]) -> Response[str]:
    """Replace the allowed origins (empty: any origin)."""
    rt = runtime(request)
    form = await request.form()
    origins = _origins(str(form.get("origins") or ""))
    try:
        await rt.writer.run(lambda c: sites.set_origins(c, site_id, origins))
    except BadRequest as exc:
        card = await rt.reads.run(_card, site_id)
        if request.headers.get("hx-request") != "true":
            raise
        return _card_response(request, card, error=exc.message)
    rt.keys.clear()
    if request.headers.get("hx-request") != "true":
        return redirect("/sites")
    card = await rt.reads.run(_card, site_id)
    return _card_response(request, card, notice="Allowed origins saved.")


@post("/sites/{site_id:str}/rotate", status_code=200)
async def site_rotate(request: Request[Any, Any, Any], site_id: FromPath[str]) -> Response[str]:
    """Revoke the site's keys and issue a new one (shown once)."""
    rt = runtime(request)
    if site_id == sites.DEMO_SITE_ID:
        raise BadRequest("the demo site's key is derived from the instance secret")
    key = await rt.writer.run(lambda c: sites.rotate_key(c, site_id))
    rt.keys.clear()
    card = await rt.reads.run(_card, site_id, key)
    if request.headers.get("hx-request") != "true":
        cards = await rt.reads.run(_cards)
        return _page(request, [card if c.site.id == site_id else c for c in cards])
    return _card_response(
        request, card, notice="New key issued. The old one stopped working just now."
    )


@post("/sites/{site_id:str}/upload-token", status_code=200)
async def site_upload_token(
    request: Request[Any, Any, Any], site_id: FromPath[str]
) -> Response[str]:
    """Create the site's upload token for CI (shown once; older ones stop working)."""
    rt = runtime(request)
    token = await rt.writer.run(lambda c: sites.create_upload_token(c, site_id))
    card = await rt.reads.run(_card, site_id)
    card = dataclasses.replace(card, upload_token=token)
    if request.headers.get("hx-request") != "true":
        cards = await rt.reads.run(_cards)
        return _page(request, [card if c.site.id == site_id else c for c in cards])
    return _card_response(request, card, notice="New upload token; older ones stopped working.")


@post("/sites/{site_id:str}/fetch-sourcemaps", status_code=200)
async def site_fetch_sourcemaps(
    request: Request[Any, Any, Any], site_id: FromPath[str]
) -> Response[str]:
    """Turn fetching bundles and maps from the site's origins on or off."""
    rt = runtime(request)
    form = await request.form()
    enabled = form.get("fetch") == "on"
    try:
        await rt.writer.run(lambda c: sites.set_fetch_sourcemaps(c, site_id, enabled))
    except BadRequest as exc:
        if request.headers.get("hx-request") != "true":
            raise
        return _card_response(request, await rt.reads.run(_card, site_id), error=exc.message)
    if request.headers.get("hx-request") != "true":
        return redirect("/sites")
    notice = "Source maps are fetched from the site's origins." if enabled else "Fetching is off."
    return _card_response(request, await rt.reads.run(_card, site_id), notice=notice)


@get("/sites/{site_id:str}/releases")
async def site_releases(request: Request[Any, Any, Any], site_id: FromPath[str]) -> Response[str]:
    """The site's releases, newest first, with sessions, failures, issues and source maps."""

    def read(conn: sqlite3.Connection) -> tuple[sites.Site, list[ReleaseRow]]:
        site = sites.get_site(conn, site_id)
        return site, list_releases(conn, site.id, site.name)

    site, rows = await runtime(request).reads.run(read)
    return page(request, "releases.html", {"section": "sites", "site": site, "rows": rows})


@post("/sites/{site_id:str}/replay-assets", status_code=200)
async def site_replay_assets(
    request: Request[Any, Any, Any], site_id: FromPath[str]
) -> Response[str]:
    """Block (default) or allow the recorded page's remote assets in this site's replays."""
    rt = runtime(request)
    form = await request.form()
    mode = str(form.get("mode") or "")
    site = await rt.writer.run(lambda c: sites.set_replay_assets(c, site_id, mode))
    if request.headers.get("hx-request") != "true":
        return redirect("/sites")
    card = await rt.reads.run(_card, site.id)
    notice = (
        "Replays now load this site's remote images, fonts and stylesheets."
        if site.replay_assets == "remote"
        else "Replays now load nothing from other hosts."
    )
    return _card_response(request, card, notice=notice)


HANDLERS = [
    site_list,
    site_add,
    site_origins,
    site_rotate,
    site_upload_token,
    site_fetch_sourcemaps,
    site_releases,
    site_replay_assets,
]
