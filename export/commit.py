"""Writing export results into a bundle without blessing anything it did not write.

`write_manifest` recomputes the file table from disk; called naively after an export it would
also record a file someone changed meanwhile. `commit_manifest` first checks that every file
outside the paths the export wrote still matches the verified manifest. A bundle is replaced as a
whole (staging directory, then rename), and the dataset's ACTIVE pointer, which pins the manifest
sha256, follows the new manifest only when it pinned the one that was verified.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from intakegate.bundle import (
    MANIFEST,
    POINTER,
    BundleError,
    Manifest,
    PointerEntry,
    VerifiedBundle,
    file_table,
    parse_pointer,
    sha256_file,
    write_manifest,
    write_pointer,
)
from intakegate.bundle.registry import pointer_lock

log = logging.getLogger(__name__)


def _inside(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def commit_manifest(bundle_dir: Path, manifest: Manifest, before: VerifiedBundle,
                    written: Iterable[str]) -> str:
    """Write the manifest after checking that only `written` paths changed; returns its sha256."""
    written = list(written)
    old = {e.path: e.to_json() for e in before.manifest.files}
    now = {e.path: e.to_json() for e in file_table(bundle_dir)}
    for path in sorted(old.keys() | now.keys()):
        if _inside(path, written):
            continue
        if old.get(path) != now.get(path):
            raise BundleError("bundle_tampered", "changed outside the export's own files while "
                                                 "the export ran; nothing was recorded", path)
    return write_manifest(bundle_dir, manifest)


def manifest_sha(bundle_dir: Path) -> str:
    return sha256_file(bundle_dir / MANIFEST)


def swap_into_place(staging: Path, bundle_dir: Path, expected_sha: str) -> None:
    """Replace `bundle_dir` with `staging`, refusing when the live bundle changed meanwhile.

    Two renames on one filesystem: a reader sees the old bundle, then (for an instant) none,
    which fails closed, then the new one; never a mix of the two.
    """
    if manifest_sha(bundle_dir) != expected_sha:
        raise BundleError("bundle_changed", "the bundle's manifest changed while exporting; "
                                            "re-run the export", str(bundle_dir))
    retired = bundle_dir.with_name(f".retired-{bundle_dir.name}-{os.getpid()}")
    os.rename(bundle_dir, retired)
    try:
        os.rename(staging, bundle_dir)
    except OSError:
        os.rename(retired, bundle_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def refresh_active_pointer(bundle_dir: Path, old_sha: str, new_sha: str) -> bool:
    """Re-pin the dataset's ACTIVE pointer (and its rollback history) to the new manifest.

    Only entries that named this bundle with exactly the verified old manifest move; anything
    else is left for `bundles activate` to judge. Returns whether the pointer changed.
    """
    root = bundle_dir.parent
    if not (root / POINTER).exists() or old_sha == new_sha:
        return False
    with pointer_lock(root):
        pointer = parse_pointer(root.parent, root.name)
        if pointer is None:
            return False
        old = PointerEntry(bundle_dir.name, old_sha)
        new = PointerEntry(bundle_dir.name, new_sha)
        entries = [pointer.current, *pointer.previous]
        if old not in entries:
            return False
        moved = [new if e == old else e for e in entries]
        write_pointer(replace(pointer, current=moved[0], previous=tuple(moved[1:])))
    log.info("ACTIVE pointer of %s re-pinned to the new manifest of %s", root.name,
             bundle_dir.name)
    return True
