"""The serving bundle on disk: one manifest that binds model, tokenizer, threshold and fallback.

Train writes a bundle directory, export adds artifacts to it, the runtime reads it. The manifest
lists the size and sha256 of every other file in the directory, so a bundle verifies as a whole:
an extra, missing, renamed, changed or special file refuses it. The active bundle of a dataset is
named by a pointer file that is replaced atomically, so activation and rollback always switch the
whole contract, never the weights alone.

The package gathers the one table of bundle paths (`paths`), hashing (`hashing`), the manifest
schema (`manifest`), verification (`verify`) and the ACTIVE registry (`registry`); callers import
from here.
"""

from intakegate.bundle.errors import BundleError
from intakegate.bundle.hashing import (
                                       FileEntry,
                                       atomic_write,
                                       file_table,
                                       sha256_bytes,
                                       sha256_file,
                                       tree_sha256,
                                       walk_files,
)
from intakegate.bundle.manifest import (
                                       FORMAT_VERSION,
                                       FULL_RANGE_INT8,
                                       Artifact,
                                       ArtifactEntry,
                                       DerivedFrom,
                                       GateEntry,
                                       Manifest,
                                       ScoreBlendEntry,
                                       ScoreHead,
                                       Status,
                                       cpu_family_exactness_refusal,
                                       now_iso,
                                       write_manifest,
)
from intakegate.bundle.paths import MANIFEST, POINTER, SIGNATURE
from intakegate.bundle.registry import (
                                       Pointer,
                                       PointerEntry,
                                       ResolvedBundle,
                                       activate,
                                       dataset_root,
                                       list_bundles,
                                       parse_pointer,
                                       read_active,
                                       resolve_bundle,
                                       rollback,
                                       write_pointer,
)
from intakegate.bundle.verify import VerifiedBundle, verify_bundle

__all__ = ["FORMAT_VERSION", "FULL_RANGE_INT8", "MANIFEST", "POINTER", "SIGNATURE", "Artifact",
           "ArtifactEntry", "BundleError", "DerivedFrom", "FileEntry", "GateEntry", "Manifest",
           "Pointer", "PointerEntry", "ResolvedBundle", "ScoreBlendEntry", "ScoreHead", "Status",
           "VerifiedBundle", "activate", "atomic_write", "cpu_family_exactness_refusal",
           "dataset_root", "file_table", "list_bundles", "now_iso", "parse_pointer", "read_active",
           "resolve_bundle", "rollback", "sha256_bytes", "sha256_file", "tree_sha256",
           "verify_bundle", "walk_files", "write_manifest", "write_pointer"]
