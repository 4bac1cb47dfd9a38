"""The one error type for a bundle that cannot be trusted; its `code` is the fail-closed reason."""

from __future__ import annotations


class BundleError(Exception):
    """A bundle that cannot be trusted. `code` is the fail-closed reason."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        self.code = code
        self.path = path
        super().__init__(f"{code}: {message}" + (f" ({path})" if path else ""))

