"""`retrospec sites add|list|origins|rotate-key|replay-assets`: sites and their ingest keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from retrospec import console
from retrospec.cli.common import JsonOpt, load, with_db
from retrospec.clock import iso

sites_app = typer.Typer(help="Sites and their ingest keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `sites` to the root CLI."""
    app.add_typer(sites_app, name="sites")


@sites_app.command("add")
def sites_add(
    name: Annotated[str, typer.Argument(help="A short name, e.g. shop.")],
    origin: Annotated[
        list[str] | None,
        typer.Option("--origin", help="Allowed page origin, e.g. https://shop.example (repeat)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a site and print its id and ingest key (shown once, stored hashed)."""
    from retrospec.sites import create_site

    loaded = load()
    site, key = with_db(loaded, lambda c: create_site(c, name, origin or []), write=True)
    if json_out:
        console.print_json(
            {"id": site.id, "name": site.name, "origins": list(site.origins), "key": key}
        )
        return
    console.print_pairs(
        [
            ("site id", site.id),
            ("name", site.name),
            ("origins", ", ".join(site.origins) or "any (no origin restriction)"),
            ("ingest key", key),
        ]
    )
    console.warn("the key is shown only once; store it now")


@sites_app.command("list")
def sites_list(json_out: JsonOpt = False) -> None:
    """List sites with their allowed origins and active key prefixes."""
    from retrospec.sites import key_prefixes, list_sites

    loaded = load()

    def read(conn: Any) -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "name": s.name,
                "origins": list(s.origins),
                "any_origin": not s.origins,
                "key_prefixes": key_prefixes(conn, s.id),
                "replay_assets": s.replay_assets,
                "created_at": iso(s.created_at),
            }
            for s in list_sites(conn)
        ]

    items = with_db(loaded, read)
    if json_out:
        console.print_json(items)
        return
    console.print_table(
        ["id", "name", "allowed origins", "keys", "replay assets", "created"],
        [
            (
                i["id"],
                i["name"],
                ", ".join(i["origins"]) or "any origin",
                ", ".join(p + "…" for p in i["key_prefixes"]),
                i["replay_assets"],
                (i["created_at"] or "")[:10],
            )
            for i in items
        ],
        empty="no sites yet; add one with `retrospec sites add NAME --origin https://your.site`",
    )


@sites_app.command("origins")
def sites_origins(
    site: Annotated[str, typer.Argument(help="Site name or id.")],
    origin: Annotated[
        list[str] | None,
        typer.Option("--origin", help="Allowed page origin (repeat); none means any origin."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Replace the origins a site's pages may send data from."""
    from retrospec.sites import get_site, set_origins

    loaded = load()
    updated = with_db(
        loaded, lambda c: set_origins(c, get_site(c, site).id, origin or []), write=True
    )
    if json_out:
        console.print_json(
            {"id": updated.id, "name": updated.name, "origins": list(updated.origins)}
        )
        return
    shown = ", ".join(updated.origins) or "any origin"
    console.success(f"{updated.name}: {shown} (a running server picks this up within 5 s)")


@sites_app.command("rotate-key")
def sites_rotate_key(
    site: Annotated[str, typer.Argument(help="Site name or id.")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a site's keys and print a new one (shown once)."""
    from retrospec.sites import get_site, rotate_key

    loaded = load()

    def rotate(conn: Any) -> tuple[str, str]:
        found = get_site(conn, site)
        return found.id, rotate_key(conn, found.id)

    site_id, key = with_db(loaded, rotate, write=True)
    if json_out:
        console.print_json({"id": site_id, "key": key})
        return
    console.print_pairs([("site id", site_id), ("new ingest key", key)])
    console.warn("old keys stop working within 5 s; update your pages with the new key")


@sites_app.command("replay-assets")
def sites_replay_assets(
    site: Annotated[str, typer.Argument(help="Site name or id.")],
    mode: Annotated[
        str,
        typer.Argument(
            help="blocked: replays load nothing from other hosts (default); remote: the "
            "viewer's browser loads the recorded page's images, fonts and stylesheets."
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Whether this site's replays may load the recorded page's remote assets."""
    from retrospec.sites import get_site, set_replay_assets

    updated = with_db(
        load(), lambda c: set_replay_assets(c, get_site(c, site).id, mode), write=True
    )
    if json_out:
        console.print_json(
            {"id": updated.id, "name": updated.name, "replay_assets": updated.replay_assets}
        )
        return
    console.success(f"{updated.name}: replay assets {updated.replay_assets}")
