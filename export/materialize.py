"""Copy a bundle's listed files out of verified bytes, so exporters and loaders never read a file
that changed after verification."""

from __future__ import annotations

from pathlib import Path

from intakegate.bundle import BundleError, VerifiedBundle


def listed_under(bundle: VerifiedBundle, prefix: str) -> list[str]:
    """Manifest paths equal to `prefix` or inside the directory `prefix`."""
    return sorted(e.path for e in bundle.manifest.files
                  if e.path == prefix or e.path.startswith(prefix.rstrip("/") + "/"))


def materialize(bundle: VerifiedBundle, prefix: str, dest: Path) -> Path:
    """Write the files under `prefix` (a file or a directory) into `dest`; return the copy's path.

    Each file is re-hashed as it is read (`VerifiedBundle.read`), so a file swapped after
    `verify_bundle` fails here with `bundle_tampered` instead of being loaded.
    """
    paths = listed_under(bundle, prefix)
    if not paths:
        raise BundleError("bundle_missing_file", "no files listed under this artifact path",
                          prefix)
    base = prefix.rstrip("/")
    for rel in paths:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bundle.read(rel))
    return dest / base
