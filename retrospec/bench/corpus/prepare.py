"""Lay out one deploy's source tree: the app's files, its port, its bugs, and deploy 2's change."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from retrospec.bench.corpus.model import App, Edit, Workspace

TODOMVC_CSS = "node_modules/todomvc/examples/vanillajs/bower_components/todomvc-common/base.css"
MODULE_TAG = '<script type="module" src="./main.js"></script>'

# Deploy 2's unrelated change: a release-notes module imported first by the entry, so every
# bundled line and column after it moves, and a new content hash for every file that includes it.
RELEASE_MODULE = """\
// Release 2.0: a "what's new" note. Unrelated to any bug; it moves every later line and column.
const NOTES = ["Faster start-up", "Keyboard shortcuts", "Dark mode preview"];

export function releaseNotes(doc) {
  const aside = doc.createElement("aside");
  aside.id = "release-notes";
  aside.setAttribute("aria-label", "What's new in 2.0");
  aside.textContent = "New in 2.0: " + NOTES.join(", ");
  aside.style.cssText = "font: 12px sans-serif; color: #777; text-align: center; padding: 4px";
  doc.body.appendChild(aside);
  return aside;
}

window.__release = { version: "2.0.0", notes: NOTES.length };
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => releaseNotes(document));
} else {
  releaseNotes(document);
}
"""


LOAD_COUNTER = "window.__modulesLoaded = (window.__modulesLoaded || 0) + 1;\n"


class EditError(RuntimeError):
    pass


def apply_edit(root: Path, edit: Edit) -> None:
    path = root / edit.file
    text = path.read_text(encoding="utf-8")
    found = text.count(edit.old)
    if found != edit.count:
        raise EditError(f"{edit.file}: expected {edit.count} of {edit.old!r}, found {found}")
    path.write_text(text.replace(edit.old, edit.new), encoding="utf-8")


def _todomvc_page(html: str, ws: Workspace) -> str:
    """The published index.html as a bundled app serves it: no vendor or app <script src>, the
    shared TodoMVC stylesheet inline, and one module script for the bundle entry."""
    html = re.sub(r'[ \t]*<script[^>]*\bsrc="[^"]*"[^>]*></script>\n?', "", html)
    html = re.sub(r'[ \t]*<link rel="stylesheet" href="bower_components[^"]*">\n?', "", html)
    css = ws.source(TODOMVC_CSS).read_text(encoding="utf-8").replace("url('bg.png')", "none")
    html = html.replace("</head>", f"<style>\n{css}</style>\n</head>", 1)
    return html.replace("</body>", f"\t{MODULE_TAG}\n</body>", 1)


def _compile_jsx(root: Path, ws: Workspace) -> None:
    """JSX to plain JS once, before bundling, so every bundler sees the same module code."""
    sources = sorted(root.rglob("*.jsx"))
    if not sources:
        return
    for src in sources:
        subprocess.run(
            [
                str(ws.node_modules / ".bin/esbuild"),
                str(src),
                f"--outfile={src.with_suffix('.js')}",
                "--log-level=warning",
            ],
            check=True,
        )
        src.unlink()


def prepare(app: App, deploy: int, dest: Path, ws: Workspace) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for target, source in app.copies:
        out = dest / target
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ws.source(source), out)
    page = dest / "index.html"
    html = page.read_text(encoding="utf-8")
    if MODULE_TAG not in html:
        page.write_text(_todomvc_page(html, ws), encoding="utf-8")
    if app.transform is not None:
        for path in sorted(p for p in dest.rglob("*") if p.is_file()):
            rel = path.relative_to(dest).as_posix()
            path.write_text(app.transform(rel, path.read_text(encoding="utf-8")), encoding="utf-8")
    for edit in app.port:
        apply_edit(dest, edit)
    for bug in app.bugs:
        for edit in bug.edits:
            apply_edit(dest, edit)
    if deploy == 2:
        # Besides the release module, every app module gains one statement at its top (a load
        # counter no minifier may drop), so positions move inside each module too, for every
        # bundler, whatever order it lays modules out in.
        for target, _ in app.copies:
            if target.endswith((".js", ".jsx")) and target != "main.js":
                path = dest / target
                path.write_text(LOAD_COUNTER + path.read_text(encoding="utf-8"), encoding="utf-8")
        (dest / "release.js").write_text(RELEASE_MODULE, encoding="utf-8")
        entry = dest / "main.js"
        entry.write_text(
            'import "./release.js";\n' + entry.read_text(encoding="utf-8"), encoding="utf-8"
        )
        for edit in app.release_edits:
            apply_edit(dest, edit)
    _compile_jsx(dest, ws)
    return dest
