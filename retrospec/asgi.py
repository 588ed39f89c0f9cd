"""The app `retrospec serve` runs, as a factory for other ASGI servers (granian, issue 16).

    python -m granian --interface asgi --factory retrospec.asgi:app --port 8080 ...

with the same RETROSPEC_* settings (environment or retrospec.toml) `retrospec serve` reads.
The server calls `app()` in its worker process; it does what `serve` does before it hands
ServeApp to uvicorn (settings, logging, GIL switch interval, create_app, a frozen heap).
`retrospec bench ingest-scale` runs it under granian beside uvicorn; `retrospec serve` (uvicorn)
stays the supported way to start. Nothing here imports granian.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

from retrospec.app import ServeApp, create_app
from retrospec.settings import Settings, load_settings
from retrospec.storage.blobs import set_store_options


def serve_app(settings: Settings) -> ServeApp:
    """What `retrospec serve` and the factory below both run, set up the same way."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # APScheduler logs every tick at INFO; the job_runs table is the record we keep.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Jobs run Python in threads; a 1 ms GIL switch interval (default 5 ms) lets the event loop
    # take the interpreter back quickly, which keeps ingest latency low while jobs work.
    sys.setswitchinterval(float(os.environ.get("RETROSPEC_SWITCH_INTERVAL", "0.001")))
    built = create_app(settings, start_jobs=settings.jobs)
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise show up as latency spikes under load.
    gc.collect()
    gc.freeze()
    return ServeApp(built)


def app() -> ServeApp:
    """granian's factory: the same ASGI app `retrospec serve` runs, with the same settings."""
    settings = load_settings().settings
    set_store_options(settings.blob_options)
    return serve_app(settings)
