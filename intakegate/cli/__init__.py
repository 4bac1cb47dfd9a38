"""The `intakegate` command line: one root app (`app`), one entry point (`main`).

Importing this package is light (typer only); each stage's commands import their stage when
run, so `intakegate --help` imports neither the runtime nor torch.
"""

from intakegate.cli.app import _setup_logging, app, main

__all__ = ["_setup_logging", "app", "main"]
