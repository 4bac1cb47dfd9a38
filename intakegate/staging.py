"""Staging directories that a failed (or interrupted) build removes, so none is left behind.

Train writes a bundle into `.staging-<version>/` and renames it into place at the end; a failure
in between used to leave the half-written folder. A function decorated with
`@removes_staging_on_failure` removes every folder it registered (`register_staging`) when it
raises anything, KeyboardInterrupt included, and re-raises.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_REGISTERED: ContextVar[list[Path] | None] = ContextVar("intakegate_staging", default=None)


def register_staging(path: Path) -> None:
    """Remove `path` if the enclosing decorated call fails (no-op outside one)."""
    registered = _REGISTERED.get()
    if registered is not None:
        registered.append(Path(path))


def removes_staging_on_failure(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        registered: list[Path] = []
        token = _REGISTERED.set(registered)
        try:
            return fn(*args, **kwargs)
        except BaseException:
            for path in registered:
                shutil.rmtree(path, ignore_errors=True)
            raise
        finally:
            _REGISTERED.reset(token)

    return wrapper  # type: ignore[return-value]
