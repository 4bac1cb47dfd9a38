"""Where bundles live: one resolution rule for every command, the stdio server and the clients.

Order: an explicit `--bundles-dir`, then the `INTAKEGATE_BUNDLES` environment variable, then
`./bundles` relative to the working directory. A bundle named on the command line is first
taken as a bundle directory, then as a dataset name whose `ACTIVE` pointer lives under the root.
A miss names both places it looked, so a client started from another directory sees why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV = "INTAKEGATE_BUNDLES"
DEFAULT = Path("bundles")
ORDER = "--bundles-dir, then INTAKEGATE_BUNDLES, then ./bundles"


@dataclass(frozen=True)
class BundlesRoot:
    """A resolved bundles root and which rule picked it (`--bundles-dir`, env or default)."""

    path: Path
    source: str

    def places_for(self, bundle: str | Path) -> tuple[str, ...]:
        """The absolute places a bundle name is looked for, in order."""
        return (str(Path(bundle).absolute()),
                str((self.path / str(bundle) / "ACTIVE").absolute()))

    def miss_hint(self, bundle: str | Path) -> str:
        """One line for a bundle that was not found: where it looked, and how to point it."""
        first, second = self.places_for(bundle)
        return (f"looked for {bundle!s} as a bundle directory ({first}) and as a dataset's "
                f"ACTIVE pointer ({second}; bundles dir from {self.source}); pass --bundles-dir "
                f"or set {ENV} (order: {ORDER})")


def resolve_root(option: str | Path | None = None,
                 environ: Mapping[str, str] | None = None) -> BundlesRoot:
    """Apply the documented order; an empty value counts as not given."""
    env = os.environ if environ is None else environ
    if option is not None and str(option) != "":
        return BundlesRoot(Path(option), "--bundles-dir")
    value = env.get(ENV, "")
    if value:
        return BundlesRoot(Path(value), ENV)
    return BundlesRoot(DEFAULT, "default ./bundles")


__all__ = ["DEFAULT", "ENV", "ORDER", "BundlesRoot", "resolve_root"]
