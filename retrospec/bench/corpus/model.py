"""The corpus vocabulary: source edits, bugs with their trigger variants, apps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from retrospec.paths import assets_dir


def data_dir() -> Path:
    """The corpus's own files: app sources, package.json + lockfile, tools/bundle.mjs."""
    return assets_dir() / "bench" / "grouping"


@dataclass(frozen=True, slots=True)
class Workspace:
    """Where the npm packages are installed (`root`) and where one run builds (`work`)."""

    root: Path  # package.json, package-lock.json, node_modules/, tools/
    work: Path

    @property
    def node_modules(self) -> Path:
        """The installed npm packages."""
        return self.root / "node_modules"

    def source(self, rel: str) -> Path:
        """A copy source: `node_modules/...` from the install, anything else from data_dir()."""
        return self.root / rel if rel.startswith("node_modules/") else data_dir() / rel

    def dist(self, app: str, bundler: str, deploy: int) -> Path:
        """One deployed site."""
        return self.work / "dist" / app / bundler / f"d{deploy}"

    def src(self, app: str, deploy: int) -> Path:
        """One deploy's prepared sources."""
        return self.work / "src" / f"d{deploy}" / app


# A step a person takes in the page. ("fill", selector, text) types into an input; ("press",
# selector, key) presses a key there; ("click"|"dblclick"|"check"|"uncheck", selector);
# ("hash", "#/route") navigates within the app; ("select", selector, value); ("wait", "ms").
Step = tuple[str, ...]

# The failure classes of the grouping issue, plus the plain kinds every corpus needs.
BugClass = Literal[
    "typo",  # misspelt name or member: ReferenceError / TypeError at one site
    "null-vs-undefined",  # same site fails on null in some sessions, on undefined in others
    "dynamic-key",  # record[field] read fails with a different property name per session
    "two-reads",  # one of two different failing reads inside one function (kept apart)
    "user-data",  # app-thrown error whose message interpolates codes, names, routes, selectors
    "two-controls",  # one bug reached through different call paths (two UI controls)
    "framework-caught",  # caught by the framework and logged with console.error(error)
    "network",  # failed request to a templated URL
    "rejection",  # unhandled promise rejection
    "vendor-thrown",  # thrown inside a vendor library (top frames are library code)
    "chunk",  # thrown inside a lazily loaded chunk
]


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace `old` by `new` in one source file; `old` must occur exactly `count` times."""

    file: str
    old: str
    new: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class Variant:
    """One session's way to reach a bug: its own user data, UI control or seeded records."""

    label: str
    steps: tuple[Step, ...]
    # Records put in place before the app starts: localStorage items, or todos for the mock API.
    local_storage: dict[str, str] = field(default_factory=dict)
    api_seed: tuple[dict[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Bug:
    id: str
    app: str
    classes: tuple[BugClass, ...]
    description: str
    edits: tuple[Edit, ...]
    variants: tuple[Variant, ...]
    # Failure kinds one triggering is expected to produce (a check that the bug fired as meant).
    expect: tuple[str, ...] = ("error",)


@dataclass(frozen=True, slots=True)
class ServerRule:
    """A mock API answer the server gives instead of its default (the server-side half of a bug)."""

    method: str
    path_regex: str
    status: int
    body: str = '{"error": "server error"}'


@dataclass(frozen=True, slots=True)
class App:
    name: str
    framework: str
    origin: str  # where the app code comes from (npm package and path, or "written for the corpus")
    packages: tuple[
        str, ...
    ]  # npm packages bundled into it (names; versions come from the lockfile)
    # Files copied into the source tree: (destination, source path relative to ROOT).
    copies: tuple[tuple[str, str], ...]
    port: tuple[Edit, ...]  # edits that make the published code bundle as modules (not bugs)
    bugs: tuple[Bug, ...]
    release_edits: tuple[Edit, ...] = ()  # deploy 2's unrelated change, besides the release module
    server_rules: tuple[ServerRule, ...] = ()
    # Steps of a session that must produce no failure at all (checks the injected bugs stay latent).
    clean_steps: tuple[Step, ...] = ()
    clean_storage: dict[str, str] = field(default_factory=dict)
    # Rewrites a copied source file (path, text) -> text, for ports that plain edits can't express.
    transform: Callable[[str, str], str] | None = None
