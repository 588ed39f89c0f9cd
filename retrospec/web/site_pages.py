"""/sites: add a site, edit its allowed origins, show the embed snippet, rotate its key."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from retrospec import sites
from retrospec.errors import BadRequest, Conflict
from retrospec.web.access import redirect, runtime
from retrospec.web.render import page

KEY_PLACEHOLDER = "YOUR_INGEST_KEY"


@dataclass(frozen=True, slots=True)
class SiteCard:
    """One site as the page shows it; `key` is set only right after creation or rotation."""

    site: sites.Site
    key_prefixes: list[str]
    key: str | None = None
    is_demo: bool = False


def _cards(conn: sqlite3.Connection) -> list[SiteCard]:
    return [
        SiteCard(s, sites.key_prefixes(conn, s.id), is_demo=s.id == sites.DEMO_SITE_ID)
        for s in sites.list_sites(conn)
    ]


def _card(conn: sqlite3.Connection, site_id: str, key: str | None = None) -> SiteCard:
    site = sites.get_site(conn, site_id)
    return SiteCard(
        site, sites.key_prefixes(conn, site.id), key=key, is_demo=site.id == sites.DEMO_SITE_ID
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
    cards = [
        SiteCard(c.site, c.key_prefixes, key, c.is_demo) if c.site.id == site.id else c
        for c in cards
    ]
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


HANDLERS = [site_list, site_add, site_origins, site_rotate, site_replay_assets]
