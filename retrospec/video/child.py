"""The clips job's render process: `python -m retrospec.video.child SPEC_JSON`.

It caps itself first (resource.setrlimit: memory per process, CPU seconds, no core files), and
Chromium and ffmpeg inherit the caps; the job adds a wall-clock limit and kills the whole
process group past it. Prints one JSON line: the clip's details, or {"error": reason}.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

from retrospec.errors import RetrospecError
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import connect
from retrospec.video.clip import ClipRequest, check_output, load_source, make_clip
from retrospec.video.render import find_tools


def cap(memory_mb: int, cpu_s: int) -> None:
    """Limit this process and its children: data segment size, CPU time, core dumps."""
    # RLIMIT_DATA rather than RLIMIT_AS: Chromium reserves terabytes of address space it never
    # touches (V8's pointer cage), so an address-space cap stops it from starting at all.
    memory = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def render_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Render the clip a spec describes (the job's arguments) and return its details."""
    request = ClipRequest(
        session_id=str(spec["session_id"]),
        out=Path(spec["out"]),
        failure_id=int(spec["failure_id"]),
        width=int(spec["width"]),
        poster=Path(spec["poster"]),
    )
    check_output(request)
    conn = connect(spec["database"], readonly=True)
    try:
        source = load_source(conn, BlobStore(str(spec["blob_url"])), request.session_id)
    finally:
        conn.close()
    return make_clip(source, request, find_tools(spec.get("chromium") or None))


def main(argv: list[str]) -> int:
    """Entry point; exit 0 with the details, 3 with a reason."""
    spec = json.loads(argv[1])
    cap(int(spec["memory_mb"]), int(spec["cpu_s"]))
    try:
        result = render_spec(spec)
    except RetrospecError as exc:
        print(json.dumps({"error": exc.message}), flush=True)
        return 3
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
