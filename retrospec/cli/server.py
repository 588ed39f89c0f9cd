"""`retrospec serve`, `init`, `settings` and `migrate`: run and set up one server."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from retrospec import console
from retrospec.cli.common import JsonOpt, load
from retrospec.errors import Conflict, RetrospecError
from retrospec.paths import example_config
from retrospec.settings import FIELDS, redact_url

if TYPE_CHECKING:
    from retrospec.runtime import Runtime


def register(app: typer.Typer) -> None:
    """Add serve, init, settings and migrate to the root CLI."""
    app.command()(serve)
    app.command()(init)
    app.command("settings")(show_settings)
    app.command()(migrate)


def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [default: 8080].")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Data directory.")] = None,
    no_jobs: Annotated[bool, typer.Option("--no-jobs", help="Do not run background jobs.")] = False,
    smtp_url: Annotated[
        str | None, typer.Option("--smtp-url", help="SMTP server for alert e-mails.")
    ] = None,
    smtp_from: Annotated[
        str | None, typer.Option("--smtp-from", help="Sender of alert e-mails.")
    ] = None,
) -> None:
    """Run the server: ingest API, dashboard and background jobs, on one port."""
    import uvicorn

    from retrospec.asgi import serve_app

    loaded = load(
        host=host,
        port=port,
        data_dir=data_dir,
        jobs=False if no_jobs else None,
        smtp_url=smtp_url,
        smtp_from=smtp_from,
    )
    settings = loaded.settings
    served = serve_app(settings)
    rt: Runtime = served.app.state.rt
    for line in rt.startup.lines(settings):
        console.print_text(line)
    config = uvicorn.Config(
        served,
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


def show_settings(json_out: JsonOpt = False) -> None:
    """Print the effective settings and where each value came from."""
    loaded = load()
    rows = []
    for name in FIELDS:
        value = getattr(loaded.settings, name)
        if name in ("secret", "s3_secret_access_key") and value:
            value = "(set)"
        elif name == "database_url" and value:
            value = redact_url(value)
        elif name == "smtp_url" and value:
            from retrospec.alerts.channels import redact_smtp_url

            value = redact_smtp_url(value)
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


def migrate() -> None:
    """Create the data directory and apply pending database migrations, then exit."""
    from retrospec.storage.migrations import latest_version, prepare_database

    settings = load().settings
    applied = prepare_database(settings.database, synchronous=settings.sqlite_synchronous)
    where = redact_url(settings.database)
    if applied:
        console.success(f"applied migrations {', '.join(map(str, applied))} to {where}")
    else:
        console.print_text(f"{where} is up to date (schema {latest_version()})")
