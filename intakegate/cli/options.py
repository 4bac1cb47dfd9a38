"""Options shared by every stage's commands, so `--bundles-dir` means one thing everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from intakegate.bundle.root import ORDER, BundlesRoot, resolve_root

BundlesDirOpt = Annotated[Optional[Path], typer.Option(
    "--bundles-dir", show_default=False,
    help=f"Root folder of the bundles ({ORDER}).")]


def bundles_root(option: Optional[Path]) -> BundlesRoot:
    """The documented resolution rule applied to a command's `--bundles-dir` value."""
    return resolve_root(option)
