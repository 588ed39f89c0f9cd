"""Rebuild the source map benchmark fixture: a generated 24-module app bundled by esbuild.

    python assets/bench/sourcemaps/make_fixture.py /path/to/node_modules/.bin/esbuild

Writes app.min.js and app.min.js.map beside this script (esbuild 0.25.12, --bundle --minify
--sourcemap, so the map embeds its sources). Deterministic: the same esbuild gives the same files.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = 24
FUNCTIONS = 12


def module(i: int) -> str:
    """One generated module: classes, arrows and plain functions that can throw."""
    lines = [f"import {{ helper{(i + 1) % MODULES}_0 }} from './mod{(i + 1) % MODULES}.js';"]
    for j in range(FUNCTIONS):
        lines += [
            f"export function helper{i}_{j}(order, depth) {{",
            "  const items = order.items || [];",
            "  let total = 0;",
            "  for (const item of items) {",
            f"    total += item.price.amount * {j + 1};",
            "  }",
            f"  if (depth > 0 && total > {j * 10}) "
            f"return helper{(i + 1) % MODULES}_0(order, depth - 1);",
            f"  if (!order.id) throw new Error('order without id in module {i} step {j}');",
            "  return total;",
            "}",
        ]
    lines += [
        f"export class Service{i} {{",
        "  constructor(api) { this.api = api; }",
        "  load(id) {",
        "    return this.api.get(id).map((row) => "
        "({ ...row, total: row.lines.reduce((a, l) => a + l.qty, 0) }));",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Generate the sources in a temp dir and bundle them with the esbuild given."""
    esbuild = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i in range(MODULES):
            (src / f"mod{i}.js").write_text(module(i))
        imports = "\n".join(f"import * as m{i} from './mod{i}.js';" for i in range(MODULES))
        uses = ", ".join(f"m{i}" for i in range(MODULES))
        (src / "main.js").write_text(f"{imports}\nwindow.modules = [{uses}];\n")
        # Bundled inside the temp dir, so the map's sources read "../src/modN.js".
        subprocess.run(
            [esbuild, "src/main.js", "--bundle", "--minify", "--sourcemap", "--format=iife",
             "--outfile=out/app.min.js"],
            cwd=tmp,
            check=True,
        )  # fmt: skip
        for name in ("app.min.js", "app.min.js.map"):
            (HERE / name).write_bytes((Path(tmp) / "out" / name).read_bytes())


if __name__ == "__main__":
    main()
