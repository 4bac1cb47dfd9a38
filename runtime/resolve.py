"""Which bundle a router serves: the one resolver (intakegate.bundle.registry), as refusals.

Why: `Router.load` takes a bundle directory or a dataset name. Resolution itself (manifest
directory first, then the ACTIVE pointer with its pinned digest, then any directory) lives in
`resolve_bundle`; here a bad pointer becomes `bundle_integrity` and a missing bundle
`model_unavailable`, so routing fails closed instead of raising.
"""

from __future__ import annotations

from pathlib import Path

from intakegate.bundle import BundleError, resolve_bundle
from intakegate.routing import Reason
from intakegate.runtime.refusal import LoadRefused


def resolve_source(source: str | Path, bundles_root: str | Path) -> tuple[Path, str | None]:
    """The bundle directory and the digest its ACTIVE pointer pins (None for a directory)."""
    try:
        resolved = resolve_bundle(source, bundles_root)
    except BundleError as exc:
        if exc.code == "pointer_invalid":
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, str(exc)) from None
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"bundle_not_found: {exc}") from None
    except (OSError, ValueError) as exc:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"bundle_not_found: {exc}") from None
    return resolved.path, resolved.pinned_manifest_sha256
