"""GET /healthz: ok or degraded for anyone; the operator's facts only with the health token."""

from __future__ import annotations

import hmac
import time
from typing import Any

from litestar import Request, get

from retrospec import __version__
from retrospec.runtime import Runtime
from retrospec.storage.migrations import current_version, latest_version


def _authorized(request: Request[Any, Any, Any], token: str) -> bool:
    if not token:
        return False
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@get("/healthz", include_in_schema=False)
async def healthz(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """200 {"status": "ok"|"degraded"}; details (version, disk bytes) need the health token.

    Degraded: the disk is below a floor (ingest refuses replay data or everything), or the
    schema is not the one this code knows. Anyone may ask; only `Authorization: Bearer
    <health_token>` sees why, the version and the exact figures.
    """
    rt: Runtime = request.app.state.rt
    schema = await rt.reads.run(current_version)
    disk = rt.disk.status()
    problems = []
    if disk.critical:
        problems.append("disk below disk_reserve_mb: ingest refuses every batch")
    elif disk.low:
        problems.append("disk below min_free_disk_mb: ingest refuses replay data")
    if schema != latest_version():
        problems.append(f"database schema {schema}, expected {latest_version()}")
    status = "degraded" if problems else "ok"
    if not _authorized(request, rt.settings.health_token):
        return {"status": status}
    return {
        "status": status,
        "problems": problems,
        "version": __version__,
        "schema": schema,
        "uptime_s": round(time.time() - rt.started_at, 1),
        "jobs": rt.scheduler is not None,
        "disk": {
            "free_bytes": disk.free_bytes,
            "floor_bytes": disk.floor_bytes,
            "reserve_bytes": disk.reserve_bytes,
            "low": disk.low,
            "critical": disk.critical,
            "replay_ingest": "refused" if disk.low else "accepted",
            "failure_ingest": "refused" if disk.critical else "accepted",
        },
    }
