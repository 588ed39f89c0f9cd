"""Source map test builders: the committed esbuild fixture laid out as a build, hostile archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from tests.support.paths import REPO

FIXTURE = REPO / "assets" / "bench" / "sourcemaps"
JS = (FIXTURE / "app.min.js").read_bytes()
MAP = (FIXTURE / "app.min.js.map").read_bytes()


def build_dir(root: Path, name: str = "app.min.js") -> Path:
    """A dist/ directory as a build leaves it: assets/<name> and its map beside it."""
    assets = root / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    js = JS.replace(b"sourceMappingURL=app.min.js.map", f"sourceMappingURL={name}.map".encode())
    (assets / name).write_bytes(js)
    (assets / f"{name}.map").write_bytes(MAP)
    return root


def stack_at(url: str, line: int, column: int, message: str = "TypeError: x") -> str:
    """A Chrome stack with one frame."""
    return f"{message}\n    at e ({url}:{line}:{column})"


def zip_bytes(members: dict[str, bytes], *, compress: bool = False) -> bytes:
    """A zip archive in memory."""
    buf = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=mode) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], *, gz: bool = False) -> bytes:
    """A tar (or .tar.gz) archive in memory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_with_link() -> bytes:
    """A tar whose bundle is a symlink to /etc/passwd."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("assets/app.min.js")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        t.addfile(info)
    return buf.getvalue()


def good_members() -> dict[str, bytes]:
    """The fixture as archive members."""
    return {"assets/app.min.js": JS, "assets/app.min.js.map": MAP}
