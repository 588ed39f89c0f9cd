"""The package's shape: no import circles, nothing imports upward, packages re-export nothing.

The import graph is read from the source (every `import` and `from ... import`, including the
ones inside functions and TYPE_CHECKING blocks), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

PACKAGE = REPO / "retrospec"

# LAYOUT.md's floors, top down. A module may import modules on its own floor or below, never
# above. The number is the floor; a key names a module or a package (every module in it).
FLOORS: dict[str, int] = {
    "retrospec.__main__": 11,
    "retrospec.cli": 10,
    "retrospec.app": 9,
    "retrospec.asgi": 9,
    "retrospec.web": 8,
    "retrospec.bench": 8,
    "retrospec.runtime": 7,
    "retrospec.startup": 6,
    "retrospec.scheduler": 6,
    "retrospec.issues": 5,
    "retrospec.alerts": 5,
    "retrospec.replay": 5,
    "retrospec.video": 5,
    "retrospec.retention": 5,
    "retrospec.ingest": 4,
    "retrospec.jobs": 4,
    "retrospec.sourcemaps": 4,
    "retrospec.storage": 3,
    "retrospec.sites": 3,
    "retrospec.auth": 3,
    "retrospec.tokens": 3,
    "retrospec.settings": 3,
    "retrospec.sdk": 3,
    "retrospec.sdk_build": 3,
    "retrospec.chromium": 2,
    "retrospec.paths": 1,
    "retrospec.clock": 1,
    "retrospec.errors": 1,
    "retrospec.console": 1,
    "retrospec.ids": 1,
    "retrospec.safetext": 1,
    "retrospec": 1,  # the package itself: __version__
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The package's modules that module `name` imports."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            # `from retrospec.issues import queries` imports the module retrospec.issues.queries.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            raise AssertionError(f"{name} imports by string (__import__); import it plainly")
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    known = modules()
    return {name: set(imports(name, path, known)) for name, path in known.items()}


def floor(name: str) -> int:
    """The floor of a module: its own entry, else its package's."""
    probe = name
    while probe not in FLOORS:
        probe = probe.rpartition(".")[0]
        if not probe:
            raise AssertionError(f"{name} has no floor: add it to FLOORS (and to LAYOUT.md)")
    return FLOORS[probe]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_the_circle_check_finds_circles() -> None:
    # The check itself must be able to fail: a made-up three-module loop is found.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_upward() -> None:
    upward = [
        f"{name} (floor {floor(name)}) imports {target} (floor {floor(target)})"
        for name, targets in sorted(graph().items())
        for target in sorted(targets)
        if floor(target) > floor(name)
    ]
    assert upward == []


@pytest.mark.parametrize(
    "init", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_packages_hold_a_docstring_and_no_reexports(init: Path) -> None:
    tree = ast.parse(init.read_text(encoding="utf-8"))
    body = [n for n in tree.body if not isinstance(n, ast.ImportFrom) or n.module != "__future__"]
    assert ast.get_docstring(tree), f"{init} needs a docstring saying what the package owns"
    extra = body[1:]
    if init.parent == PACKAGE:  # the top package also carries the version
        extra = [n for n in extra if not _assigns_version(n)]
    assert extra == [], f"{init}: only a docstring (each name has one home)"


def _assigns_version(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
    )


def test_command_modules_register_themselves_and_never_import_main() -> None:
    g = graph()
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        name = f"retrospec.cli.{path.stem}"
        if path.stem in ("__init__", "main", "common"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "register" in defined, f"{name} must expose register(app)"
        assert "retrospec.cli.main" not in g[name], f"{name} imports cli/main.py"


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                if mod.startswith("tests.test_") or mod == "tests.conftest":
                    offenders.append(f"{path.relative_to(REPO)} imports {mod}")
    assert offenders == [], "shared helpers belong in tests/support/"
