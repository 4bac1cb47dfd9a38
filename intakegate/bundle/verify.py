"""Verification: a bundle is trusted only when every file matches its manifest entry.

Why: the manifest is the contract (model, tokenizer, threshold, fallback); checking the exact
file set, sizes and digests once, and then reading files only through `VerifiedBundle.read`
(which re-checks each digest), means no stage loads bytes that were not verified.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from intakegate.bundle.errors import BundleError
from intakegate.bundle.hashing import sha256_bytes, sha256_files, walk_files
from intakegate.bundle.manifest import Manifest, parse_manifest_bytes
from intakegate.bundle.paths import FORBIDDEN_SUFFIXES, MANIFEST, SIGNATURE, check_relpath


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every file matched its manifest entry at verification time."""

    root: Path
    manifest: Manifest
    manifest_sha256: str

    def read(self, rel: str) -> bytes:
        """Read a listed file and re-check its digest: callers load from these very bytes."""
        entry = self.manifest.file(rel)
        if entry is None:
            raise BundleError("bundle_missing_file", "not listed in the manifest", rel)
        path = self.root / rel
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError("bundle_special_file", "not a regular file", rel)
        if st.st_size != entry.size:
            raise BundleError("bundle_size_mismatch", "size changed", rel)
        data = path.read_bytes()
        if sha256_bytes(data) != entry.sha256:
            raise BundleError("bundle_tampered", "sha256 mismatch", rel)
        return data

    def read_tree(self, prefix: str) -> dict[str, bytes]:
        """Every listed file inside the directory `prefix`, keyed by its path inside it, each
        re-checked as `read` does (a model directory loaded from the very bytes hashed)."""
        base = prefix.rstrip("/") + "/"
        return {e.path[len(base):]: self.read(e.path)
                for e in sorted(self.manifest.files, key=lambda e: e.path)
                if e.path.startswith(base)}

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    @property
    def bundle_version(self) -> str:
        return self.manifest.bundle_version


def verify_bundle(bundle_dir: str | Path) -> VerifiedBundle:
    """Check the manifest schema and every file: exact set, sizes first, then sha256."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError("model_unavailable", "bundle directory not found", str(root))
    manifest_path = root / MANIFEST
    try:
        st = os.lstat(manifest_path)
    except FileNotFoundError:
        raise BundleError("bundle_missing_file", "manifest.json not found", str(root)) from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError("bundle_special_file", "manifest is not a regular file", MANIFEST)
    data = manifest_path.read_bytes()
    manifest = parse_manifest_bytes(data)
    on_disk = walk_files(root)
    on_disk.pop(MANIFEST, None)
    on_disk.pop(SIGNATURE, None)
    listed = {e.path: e for e in manifest.files}
    for rel in sorted(on_disk):
        if rel not in listed:
            raise BundleError("bundle_unlisted_file", "file not listed in the manifest", rel)
    for rel in sorted(listed):
        if rel not in on_disk:
            raise BundleError("bundle_missing_file", "listed file is missing", rel)
    for rel, path in sorted(on_disk.items()):
        check_relpath(rel)
        if Path(rel).suffix in FORBIDDEN_SUFFIXES:
            raise BundleError("format_not_allowed", "pickle-capable and code files are never "
                                                    "loaded", rel)
        if path.stat().st_size != listed[rel].size:
            raise BundleError("bundle_size_mismatch", "size differs from the manifest", rel)
    digests = sha256_files(on_disk)
    for rel in sorted(on_disk):
        if digests[rel] != listed[rel].sha256:
            raise BundleError("bundle_tampered", "sha256 differs from the manifest", rel)
    return VerifiedBundle(root, manifest, sha256_bytes(data))

