"""GET /healthz: liveness plus the facts an operator checks first."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get

from retrospec import __version__
from retrospec.runtime import Runtime
from retrospec.storage.migrations import current_version


@get("/healthz", include_in_schema=False)
async def healthz(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """200 {"status": "ok", ...}; disk.low tells whether replay data is being refused."""
    rt: Runtime = request.app.state.rt
    schema = await rt.reads.run(current_version)
    disk = rt.disk.status()
    return {
        "status": "ok",
        "version": __version__,
        "schema": schema,
        "uptime_s": round(time.time() - rt.started_at, 1),
        "jobs": rt.scheduler is not None,
        "disk": {
            "free_bytes": disk.free_bytes,
            "floor_bytes": disk.floor_bytes,
            "low": disk.low,
            "replay_ingest": "refused" if disk.low else "accepted",
        },
    }
