"""Find the templates, assets and example config in a source checkout or an installed wheel."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def resource_root() -> Path:
    """Directory holding templates/, assets/ and retrospec.toml.example."""
    # The wheel carries them under retrospec/_data (hatch force-include); a checkout has
    # them next to the package.
    for candidate in (_PACKAGE / "_data", _PACKAGE.parent):
        if (candidate / "templates").is_dir() and (candidate / "assets").is_dir():
            return candidate
    raise RuntimeError(f"RetroSpec resources not found near {_PACKAGE}; is the install broken?")


def templates_dir() -> Path:
    """Jinja2 templates."""
    return resource_root() / "templates"


def assets_dir() -> Path:
    """Static assets: SDK source, vendored htmx and rrweb, CSS."""
    return resource_root() / "assets"


def example_config() -> Path:
    """The documented example configuration."""
    return resource_root() / "retrospec.toml.example"
