"""GET /healthz: ok or degraded for anyone; the operator's facts only with the health token."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from litestar import Request, Response, get

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


CHECK_TIMEOUT_S = 3.0


async def _database_version(rt: Runtime) -> int | None:
    try:
        return await asyncio.wait_for(rt.reads.run(current_version), CHECK_TIMEOUT_S)
    except Exception:  # unreachable, timed out, or a broken connection: not a 500
        return None


async def _store_reachable(rt: Runtime) -> bool:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(
            loop.run_in_executor(None, rt.blobs.reachable), CHECK_TIMEOUT_S
        )
    except Exception:
        return False


@get("/healthz", include_in_schema=False)
async def healthz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """200 {"status": "ok"|"degraded"}, 503 "unavailable" when the database or blob store is
    lost (checked with a short timeout); details (version, disk bytes) need the health token.

    Degraded: the disk is below a floor (ingest refuses replay data or everything), or the
    schema is not the one this code knows. Anyone may ask; only `Authorization: Bearer
    <health_token>` sees why, the version and the exact figures.
    """
    rt: Runtime = request.app.state.rt
    schema, store_ok = await asyncio.gather(_database_version(rt), _store_reachable(rt))
    disk = rt.disk.status()
    problems = []
    lost = schema is None or not store_ok
    if schema is None:
        problems.append("database unreachable (database_url)")
    if not store_ok:
        problems.append("blob store unreachable (blob_url)")
    if disk.critical:
        problems.append("disk below disk_reserve_mb: ingest refuses every batch")
    elif disk.low:
        problems.append("disk below min_free_disk_mb: ingest refuses replay data")
    if schema is not None and schema != latest_version():
        problems.append(f"database schema {schema}, expected {latest_version()}")
    status = "unavailable" if lost else "degraded" if problems else "ok"
    code = 503 if lost else 200
    if not _authorized(request, rt.settings.health_token):
        return Response({"status": status}, status_code=code)
    return Response(_details(rt, status, problems, schema, disk), status_code=code)


def _details(
    rt: Runtime, status: str, problems: list[str], schema: int | None, disk: Any
) -> dict[str, Any]:
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
