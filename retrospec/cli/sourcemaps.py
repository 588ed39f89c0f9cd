"""`retrospec sourcemaps upload|list|delete|pin`: the source map store from a terminal or CI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from retrospec import console
from retrospec.cli.common import JsonOpt, fit_table, human_bytes, load, read, require_db
from retrospec.clock import iso

if TYPE_CHECKING:
    from retrospec.sourcemaps.store import StoredFile

sourcemaps_app = typer.Typer(
    help="Source maps per site and release: upload, list, delete.", no_args_is_help=True
)

SiteArg = Annotated[str, typer.Argument(help="Site name or id.")]
ReleaseOpt = Annotated[str, typer.Option("--release", help="The release the files belong to.")]


def register(app: typer.Typer) -> None:
    """Add `sourcemaps` to the root CLI."""
    app.add_typer(sourcemaps_app, name="sourcemaps")


@sourcemaps_app.command("upload")
def sourcemaps_upload(
    site: SiteArg,
    paths: Annotated[
        list[Path], typer.Argument(help="Directories, .zip/.tar(.gz) archives or files.")
    ],
    release: ReleaseOpt,
    url_prefix: Annotated[
        str,
        typer.Option(
            "--url-prefix", help="Where the files are served: ~/assets (any origin) or a URL."
        ),
    ] = "~/",
    dist: Annotated[str, typer.Option("--dist", help="Build variant within the release.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Store bundles and their source maps for one release (all or nothing)."""
    from retrospec.sites import get_site
    from retrospec.sourcemaps.store import check_release, result_json, store_artifacts
    from retrospec.sourcemaps.upload import Budget, pair, path_members
    from retrospec.storage.blobs import BlobStore
    from retrospec.storage.db import DirectWriter, connect

    settings = load().settings
    found = read(settings, lambda c: get_site(c, site))
    check_release(release, dist)
    budget = Budget(settings.sourcemap_max_upload_mb << 20)
    collected = pair(path_members(paths, budget), url_prefix)
    conn = connect(settings.database, synchronous=settings.sqlite_synchronous)
    try:
        result = store_artifacts(
            DirectWriter(conn).call,
            BlobStore(settings.effective_blob_url),
            found.id,
            release,
            dist,
            collected.files,
        )
    finally:
        conn.close()
    result.warnings = collected.warnings + result.warnings
    if json_out:
        console.print_json(result_json(result, found.name))
        return
    for warning in result.warnings:
        console.warn(warning)
    maps = sum(1 for f in result.files)
    bundles = sum(1 for f in result.files if f.js_digest)
    console.success(
        f"stored {maps} source maps ({bundles} with their bundle) for {found.name} "
        f"release {result.release}" + (f" dist {result.dist}" if result.dist else "")
    )


@sourcemaps_app.command("list")
def sourcemaps_list(
    site: SiteArg,
    release: Annotated[str | None, typer.Option("--release", help="Only this release.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Stored bundles and maps of a site, newest upload first."""
    from retrospec.sites import get_site
    from retrospec.sourcemaps.store import file_json, list_files

    settings = load().settings

    def fetch(conn: Any) -> tuple[Any, list[StoredFile]]:
        found = get_site(conn, site)
        return found, list_files(conn, found.id, release=release)

    found, files = read(settings, fetch)
    if json_out:
        console.print_json(
            {
                "schema_version": 1,
                "site": {"id": found.id, "name": found.name},
                "release": release,
                "files": [file_json(f) for f in files],
            }
        )
        return
    fit_table(
        [
            ("release", {}),
            ("name", {}),
            ("map", {"justify": "right"}),
            ("sources", {"justify": "right", "short": "src"}),
            ("debug id", {"short": "id"}),
            ("uploaded", {}),
        ],
        [
            (
                f.release + (f" ({f.dist})" if f.dist else "") + (" [pinned]" if f.pinned else ""),
                f.name,
                human_bytes(f.map_bytes),
                f"{f.sources_with_content}/{f.sources}",
                (f.debug_id or "")[:8],
                (iso(f.uploaded_at) or "")[:16].replace("T", " "),
            )
            for f in files
        ],
        flex="name",
        optional=("debug id",),
        empty=f"no source maps for {found.name}" + (f" release {release}" if release else ""),
    )


@sourcemaps_app.command("delete")
def sourcemaps_delete(site: SiteArg, release: ReleaseOpt) -> None:
    """Delete a release's bundles and maps (rows first, then the blobs no release shares)."""
    from retrospec.sites import get_site
    from retrospec.sourcemaps.store import delete_release
    from retrospec.storage.blobs import BlobStore
    from retrospec.storage.db import DirectWriter, connect

    settings = load().settings
    require_db(settings)
    conn = connect(settings.database, synchronous=settings.sqlite_synchronous)
    try:
        found = get_site(conn, site)
        count, unused = DirectWriter(conn).call(lambda c: delete_release(c, found.id, release))
    finally:
        conn.close()
    if count == 0:
        from retrospec.errors import NotFound

        raise NotFound(f"no source maps for {found.name} release {release}")
    BlobStore(settings.effective_blob_url).delete(unused)
    console.success(f"deleted {count} source maps of {found.name} release {release}")


@sourcemaps_app.command("pin")
def sourcemaps_pin(
    site: SiteArg,
    release: ReleaseOpt,
    unpin: Annotated[bool, typer.Option("--unpin", help="Let retention drop them again.")] = False,
) -> None:
    """Keep a release's maps past retention (for a long-lived release), or stop keeping them."""
    from retrospec.cli.common import with_db
    from retrospec.errors import NotFound
    from retrospec.sites import get_site
    from retrospec.sourcemaps.store import set_pinned

    loaded = load()
    require_db(loaded.settings)
    count = with_db(
        loaded, lambda c: set_pinned(c, get_site(c, site).id, release, not unpin), write=True
    )
    if count == 0:
        raise NotFound(f"no source maps for {site} release {release}")
    console.success(f"{'unpinned' if unpin else 'pinned'} {count} source maps of release {release}")
