"""Export commands for the `intakegate` CLI (export; gate BUNDLE). Light imports only."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the export stage's commands to the main app."""
