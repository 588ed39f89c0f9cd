"""RetroSpec: self-hosted session replay and grouped front-end failures."""

from __future__ import annotations

__version__ = "0.1.0"
