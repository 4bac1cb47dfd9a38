"""Import heavy optional parts with an error that prints the exact install line."""

from __future__ import annotations

import importlib
from types import ModuleType

from intakegate.errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import `module` or explain which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(extra, module.split(".")[0]) from None
