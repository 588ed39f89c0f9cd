"""`retrospec sites ...`: sites, their keys, upload tokens, DSNs, source map and replay settings."""

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
    """Add a site; print its id, ingest key (shown once, stored hashed) and Sentry DSN."""
    from retrospec.sites import create_site, dsn

    loaded = load()
    site, key = with_db(loaded, lambda c: create_site(c, name, origin or []), write=True)
    site_dsn = dsn(site, loaded.settings.base_url)
    if json_out:
        console.print_json(
            {
                "id": site.id,
                "name": site.name,
                "origins": list(site.origins),
                "key": key,
                "dsn": site_dsn,
            }
        )
        return
    console.print_pairs(
        [
            ("site id", site.id),
            ("name", site.name),
            ("origins", ", ".join(site.origins) or "any (no origin restriction)"),
            ("ingest key", key),
            ("Sentry DSN", site_dsn or ""),
        ]
    )
    console.warn("the key is shown only once; store it now")


@sites_app.command("list")
def sites_list(json_out: JsonOpt = False) -> None:
    """List sites with their allowed origins, active key prefixes and Sentry DSNs."""
    from retrospec.sites import dsn, key_prefixes, list_sites

    loaded = load()
    base = loaded.settings.base_url

    def read(conn: Any) -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "name": s.name,
                "origins": list(s.origins),
                "any_origin": not s.origins,
                "key_prefixes": key_prefixes(conn, s.id),
                "fetch_sourcemaps": s.fetch_sourcemaps,
                "dsn": dsn(s, base),
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
        ["id", "name", "allowed origins", "keys", "Sentry DSN", "replay assets", "created"],
        [
            (
                i["id"],
                i["name"],
                ", ".join(i["origins"]) or "any origin",
                ", ".join(p + "…" for p in i["key_prefixes"]),
                i["dsn"] or "",
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
    """Revoke a site's keys (the DSN's too) and print new ones (the ingest key shown once)."""
    from retrospec.sites import dsn, get_site, rotate_key

    loaded = load()

    def rotate(conn: Any) -> tuple[str, str, str | None]:
        found = get_site(conn, site)
        key = rotate_key(conn, found.id)
        return found.id, key, dsn(get_site(conn, found.id), loaded.settings.base_url)

    site_id, key, site_dsn = with_db(loaded, rotate, write=True)
    if json_out:
        console.print_json({"id": site_id, "key": key, "dsn": site_dsn})
        return
    console.print_pairs(
        [("site id", site_id), ("new ingest key", key), ("new Sentry DSN", site_dsn or "")]
    )
    console.warn("old keys stop working within 5 s; update your pages with the new key or DSN")


@sites_app.command("upload-token")
def sites_upload_token(
    site: Annotated[str, typer.Argument(help="Site name or id.")],
    json_out: JsonOpt = False,
) -> None:
    """Create the site's token for CI source map uploads (shown once; older ones stop working).

    It is not the ingest key: the ingest key is public (it is in every page), this one is a
    secret for `POST /api/v1/sourcemaps`.
    """
    from retrospec.sites import create_upload_token, get_site

    loaded = load()

    def create(conn: Any) -> tuple[str, str, str]:
        found = get_site(conn, site)
        return found.id, found.name, create_upload_token(conn, found.id)

    site_id, name, token = with_db(loaded, create, write=True)
    if json_out:
        console.print_json({"id": site_id, "name": name, "upload_token": token})
        return
    console.print_pairs([("site", name), ("upload token", token)])
    console.warn("the token is shown only once and replaces any older one; store it in your CI")


@sites_app.command("fetch-sourcemaps")
def sites_fetch_sourcemaps(
    site: Annotated[str, typer.Argument(help="Site name or id.")],
    state: Annotated[str, typer.Argument(help="on or off.")],
    json_out: JsonOpt = False,
) -> None:
    """Fetch bundles and their maps from the site's allowed origins when none were uploaded."""
    from retrospec.errors import UsageError
    from retrospec.sites import get_site, set_fetch_sourcemaps

    if state not in ("on", "off"):
        raise UsageError(f"state must be on or off, got {state!r}")
    loaded = load()
    updated = with_db(
        loaded,
        lambda c: set_fetch_sourcemaps(c, get_site(c, site).id, state == "on"),
        write=True,
    )
    if json_out:
        console.print_json(
            {"id": updated.id, "name": updated.name, "fetch_sourcemaps": updated.fetch_sourcemaps}
        )
        return
    console.success(f"{updated.name}: fetching source maps is {state}")


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
