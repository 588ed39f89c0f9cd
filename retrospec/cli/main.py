"""The `retrospec` command: parses arguments, calls library functions, prints via console."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from retrospec import __version__, console
from retrospec.clock import iso
from retrospec.errors import Conflict, RetrospecError
from retrospec.paths import example_config
from retrospec.settings import FIELDS, LoadedSettings, load_settings
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import latest_version, prepare_database

T = TypeVar("T")

app = typer.Typer(
    name="retrospec",
    help="Self-hosted session replay and grouped front-end failures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sites_app = typer.Typer(help="Sites and their ingest keys.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (else $RETROSPEC_CONFIG, else ./retrospec.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class State:
    """Options of the root command, passed to subcommands through the typer context."""

    config: Path | None = None


_state = State()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    """RetroSpec: session replay plus grouped front-end failures, in one process on SQLite."""
    if version:
        console.print_text(f"retrospec {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        console.print_text(ctx.get_help())
        raise typer.Exit(2)
    _state.config = config


def settings_from_cli(**overrides: Any) -> LoadedSettings:
    """Effective settings for this invocation (flags beat env beat file beat defaults)."""
    return load_settings(_state.config, overrides=overrides)


def with_db(loaded: LoadedSettings, fn: Callable[[Any], T], *, write: bool = False) -> T:
    """Open the database (migrating it if needed), run fn(conn) and close it."""
    settings = loaded.settings
    prepare_database(settings.db_path, synchronous=settings.sqlite_synchronous)
    conn = connect(settings.db_path, readonly=not write)
    try:
        if write:
            return DirectWriter(conn).call(fn)
        return fn(conn)
    finally:
        conn.close()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [default: 8080].")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Data directory.")] = None,
    no_jobs: Annotated[bool, typer.Option("--no-jobs", help="Do not run background jobs.")] = False,
) -> None:
    """Run the server: ingest API, dashboard and background jobs, on one port."""
    import uvicorn

    from retrospec.app import ServeApp, create_app

    loaded = settings_from_cli(
        host=host, port=port, data_dir=data_dir, jobs=False if no_jobs else None
    )
    settings = loaded.settings
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # APScheduler logs every tick at INFO; the job_runs table is the record we keep.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Jobs run Python in threads; a 1 ms GIL switch interval (default 5 ms) lets the event loop
    # take the interpreter back quickly, which keeps ingest latency low while jobs work.
    sys.setswitchinterval(float(os.environ.get("RETROSPEC_SWITCH_INTERVAL", "0.001")))
    app_ = create_app(settings, start_jobs=settings.jobs)
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise show up as latency spikes under load.
    gc.collect()
    gc.freeze()
    for line in startup_lines(app_):
        console.print_text(line)
    config = uvicorn.Config(
        ServeApp(app_),
        host=settings.host,
        port=settings.port,
        workers=1,
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=15,
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise RetrospecError(f"could not listen on {settings.host}:{settings.port}")


def startup_lines(app_: Any) -> list[str]:
    """What serve prints before it starts listening."""
    rt = app_.state.rt
    s = rt.settings
    lines = [
        f"RetroSpec {__version__} — data in {s.data_path}",
        f"Dashboard: {s.base_url}/",
    ]
    if s.demo:
        lines.append(f"Demo page: {s.base_url}/demo")
    lines.extend(rt.extras.get("startup_lines", []))
    return lines


@app.command()
def init(
    path: Annotated[Path, typer.Option(help="Where to write the config.")] = Path("retrospec.toml"),
) -> None:
    """Write retrospec.toml with a generated secret (refuses to overwrite)."""
    if path.exists():
        raise Conflict(f"{path} already exists; edit it or remove it first")
    text = example_config().read_text(encoding="utf-8")
    secret = secrets.token_urlsafe(48)
    text = text.replace('# secret = ""', f'secret = "{secret}"', 1)
    if f'secret = "{secret}"' not in text:
        raise RetrospecError("the example config has no secret line; reinstall RetroSpec")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    console.success(f"wrote {path} (with a new secret; keep it private)")


@app.command("settings")
def show_settings(json_out: JsonOpt = False) -> None:
    """Print the effective settings and where each value came from."""
    loaded = settings_from_cli()
    rows = []
    for name in FIELDS:
        value = getattr(loaded.settings, name)
        if name == "secret" and value:
            value = "(set)"
        rows.append((name, value, loaded.sources[name]))
    if json_out:
        console.print_json(
            {
                "config_file": str(loaded.config_path) if loaded.config_path else None,
                "settings": {n: {"value": v, "source": src} for n, v, src in rows},
            }
        )
        return
    where = loaded.config_path or "none (defaults and environment only)"
    console.print_text(f"config file: {where}")
    console.print_table(["setting", "value", "source"], rows)


@app.command()
def migrate() -> None:
    """Create the data directory and apply pending database migrations, then exit."""
    settings = settings_from_cli().settings
    applied = prepare_database(settings.db_path, synchronous=settings.sqlite_synchronous)
    if applied:
        console.success(f"applied migrations {', '.join(map(str, applied))} to {settings.db_path}")
    else:
        console.print_text(f"{settings.db_path} is up to date (schema {latest_version()})")


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

    loaded = settings_from_cli()
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

    loaded = settings_from_cli()

    def read(conn: Any) -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "name": s.name,
                "origins": list(s.origins),
                "any_origin": not s.origins,
                "key_prefixes": key_prefixes(conn, s.id),
                "created_at": iso(s.created_at),
            }
            for s in list_sites(conn)
        ]

    items = with_db(loaded, read)
    if json_out:
        console.print_json(items)
        return
    console.print_table(
        ["id", "name", "allowed origins", "keys", "created"],
        [
            (
                i["id"],
                i["name"],
                ", ".join(i["origins"]) or "any origin",
                ", ".join(p + "…" for p in i["key_prefixes"]),
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

    loaded = settings_from_cli()
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

    loaded = settings_from_cli()

    def rotate(conn: Any) -> tuple[str, str]:
        found = get_site(conn, site)
        return found.id, rotate_key(conn, found.id)

    site_id, key = with_db(loaded, rotate, write=True)
    if json_out:
        console.print_json({"id": site_id, "key": key})
        return
    console.print_pairs([("site id", site_id), ("new ingest key", key)])
    console.warn("old keys stop working within 5 s; update your pages with the new key")


def main() -> None:
    """Entry point: run the CLI, turning RetroSpec errors into one line and an exit code."""
    try:
        rc = app(standalone_mode=False)
    except RetrospecError as exc:
        console.error(exc.message)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.error("aborted")
        sys.exit(1)
    except typer.TyperException as exc:
        # Usage errors from the parser (bad option, missing argument): typer's usage line plus
        # the problem, exit code 2 (their exit_code).
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            console.error(exc.message)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


# --- command modules register here (one line each) ---
__import__("retrospec.cli.bench").cli.bench.register(app)
__import__("retrospec.cli.issues").cli.issues.register(app)
__import__("retrospec.cli.sessions").cli.sessions.register(app)
__import__("retrospec.cli.jobs").cli.jobs.register(app)
__import__("retrospec.cli.users").cli.users.register(app)
