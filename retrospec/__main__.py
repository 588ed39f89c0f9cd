"""`python -m retrospec` runs the CLI."""

from __future__ import annotations

from retrospec.cli.main import main

main()
