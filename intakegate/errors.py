"""Errors that name the file, row and field, so a user can fix bad input without reading code."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: a data file, label guide, receipt or run that cannot be trusted."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
        if field is not None:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class MissingExtraError(ImportError):
    """A heavy optional part was asked for without its extra installed."""

    def __init__(self, extra: str, package: str) -> None:
        super().__init__(
            f"'{package}' is needed here but is not installed. "
            f"Install it with: pip install 'intakegate[{extra}]'"
        )
