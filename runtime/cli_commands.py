"""Runtime commands for the `intakegate` CLI (route, serve, shadow). Light imports only."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the runtime's commands to the main app."""
