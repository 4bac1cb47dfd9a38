"""The ACTIVE registry: which bundle of a dataset serves, activation, rollback and listing.

`ACTIVE` is a small JSON file beside the bundles that anyone with write access to the folder can
edit. A pointer must name a plain version (a direct child of the dataset's folder, no
separators, no `..`) and carry the 64-hex manifest digest the loader then requires; anything
else fails closed as `pointer_invalid`. It is replaced atomically under a lock, so activation
and rollback always switch the whole contract, never the weights alone.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.bundle.errors import BundleError
from intakegate.bundle.hashing import atomic_write
from intakegate.bundle.manifest import now_iso, parse_manifest_bytes
from intakegate.bundle.paths import MANIFEST, POINTER, POINTER_LOCK
from intakegate.bundle.verify import verify_bundle
from intakegate.errors import InputError
from intakegate.jsonio import dumps_canonical, loads_strict

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_POINTER_BYTES = 1 << 20


@dataclass(frozen=True)
class Pointer:
    """A checked ACTIVE pointer: which bundle directory, pinned to which manifest digest."""

    dataset: str
    bundle_version: str
    manifest_sha256: str
    bundle_dir: Path
    raw: dict[str, Any]


def check_name(name: object, what: str = "bundle version") -> str:
    """A dataset or version name is one plain path component (what `activate` accepts)."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise BundleError("pointer_invalid", f"{what} {name!r} is not a plain name "
                                             f"(letters, digits, '.', '_', '-')")
    return name


def read_active(bundles_root: str | Path, dataset: str) -> Pointer | None:
    """The dataset's checked pointer; None when there is none.

    Raises BundleError `pointer_invalid` for a pointer that names a path, has no digest, or
    names something that is not a bundle directory right inside the dataset's folder; and
    `model_unavailable` for one that cannot be read as JSON at all (e.g. truncated to 0 bytes).
    """
    check_name(dataset, "dataset")
    root = dataset_root(bundles_root, dataset)
    path = root / POINTER
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_POINTER_BYTES:
        raise BundleError("pointer_invalid", "ACTIVE is not a small regular file", str(path))
    try:
        obj = loads_strict(path.read_bytes().decode("utf-8"), path=path)
    except (InputError, UnicodeDecodeError) as exc:
        raise BundleError("model_unavailable", f"ACTIVE pointer is unreadable: {exc}",
                          str(path)) from None
    if not isinstance(obj, dict):
        raise BundleError("model_unavailable", "ACTIVE pointer is not an object", str(path))
    version = check_name(obj.get("bundle_version"))
    digest = obj.get("manifest_sha256")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise BundleError("pointer_invalid", "ACTIVE carries no manifest_sha256 digest; "
                                             "re-run `intakegate bundles activate`", str(path))
    target = root / version
    try:
        tst = os.lstat(target)
    except FileNotFoundError:
        raise BundleError("model_unavailable", f"ACTIVE names {version!r}, which is not there",
                          str(root)) from None
    if not stat.S_ISDIR(tst.st_mode) or target.parent != root:
        raise BundleError("pointer_invalid", f"ACTIVE names {version!r}, which is not a bundle "
                                             f"directory inside {root}", str(path))
    return Pointer(dataset, version, digest, target, obj)


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


@contextmanager
def pointer_lock(dataset_dir: Path) -> Iterator[None]:
    """Serialize read-modify-write of one dataset's ACTIVE across threads and processes, so
    concurrent activations neither collide nor drop an entry from the rollback history.

    A thread lock per folder, then an advisory lock on `ACTIVE.lock` (flock on POSIX, msvcrt
    on Windows); the lock file stays (removing it would race with the next locker).
    """
    key = os.path.realpath(dataset_dir)
    with _GUARD:
        lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
    with lock:
        fd = os.open(Path(dataset_dir) / POINTER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_fd(fd, True)
            try:
                yield
            finally:
                _lock_fd(fd, False)
        finally:
            os.close(fd)


def _lock_fd(fd: int, acquire: bool) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_LOCK if acquire else msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_EX if acquire else fcntl.LOCK_UN)


def dataset_root(bundles_root: str | Path, dataset: str) -> Path:
    return Path(bundles_root) / dataset


def read_pointer(bundles_root: str | Path, dataset: str) -> dict[str, Any] | None:
    path = dataset_root(bundles_root, dataset) / POINTER
    if not path.exists():
        return None
    obj = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(obj, dict) or not isinstance(obj.get("bundle_version"), str):
        raise BundleError("model_unavailable", "ACTIVE pointer is unreadable", str(path))
    return obj


def list_bundles(bundles_root: str | Path) -> list[dict[str, Any]]:
    """Every bundle under the root, with its decision and whether it is active."""
    out = []
    root = Path(bundles_root)
    if not root.is_dir():
        return out
    for manifest_path in sorted(root.glob(f"*/*/{MANIFEST}")):
        bundle_dir = manifest_path.parent
        dataset = bundle_dir.parent.name
        pointer = read_pointer(root, dataset)
        try:
            m = parse_manifest_bytes(manifest_path.read_bytes(), str(manifest_path))
            decision, reason, thr = m.decision.value, m.decision_reason, m.threshold
            artifacts = {k: v.status.value for k, v in m.artifacts.items()}
        except OSError:
            decision, reason, thr, artifacts = "unreadable", "", None, {}
        except BundleError as exc:
            decision, reason, thr, artifacts = "invalid", str(exc), None, {}
        out.append({"dataset": dataset, "bundle_version": bundle_dir.name, "decision": decision,
                    "reason": reason, "threshold": thr, "artifacts": artifacts,
                    "active": bool(pointer and pointer["bundle_version"] == bundle_dir.name),
                    "path": str(bundle_dir)})
    return out


def activate(bundles_root: str | Path, dataset: str, bundle_version: str) -> dict[str, Any]:
    """Point the dataset's ACTIVE at a verified, eligible bundle; keep the previous for rollback."""
    check_name(dataset, "dataset")
    check_name(bundle_version)  # the same rule the router applies when it reads ACTIVE
    root = dataset_root(bundles_root, dataset)
    target = root / bundle_version
    if not target.is_dir() or target.is_symlink() or target.parent != root:
        raise BundleError("model_unavailable", f"no bundle {bundle_version!r}", str(root))
    verified = verify_bundle(target)
    if not verified.manifest.eligible:
        raise BundleError("artifact_held", f"bundle {bundle_version} is held: "
                                           f"{verified.manifest.decision_reason}", str(target))
    with pointer_lock(root):  # read-modify-write: one activation at a time per dataset
        current = read_pointer(bundles_root, dataset)
        history = []
        if current is not None:
            history = [{"bundle_version": current["bundle_version"],
                        "manifest_sha256": current["manifest_sha256"]}] + list(
                current.get("previous", []))
        pointer = {"bundle_version": bundle_version, "manifest_sha256": verified.manifest_sha256,
                   "activated_at": now_iso(), "previous": history[:10]}
        atomic_write(root / POINTER, dumps_canonical(pointer).encode("utf-8"))
    return pointer


def rollback(bundles_root: str | Path, dataset: str) -> dict[str, Any]:
    """Re-activate the previous bundle as a whole (model, tokenizer, threshold, fallback)."""
    check_name(dataset, "dataset")
    with pointer_lock(dataset_root(bundles_root, dataset)):
        return _rollback_locked(bundles_root, dataset)


def _rollback_locked(bundles_root: str | Path, dataset: str) -> dict[str, Any]:
    current = read_pointer(bundles_root, dataset)
    if current is None or not current.get("previous"):
        raise BundleError("model_unavailable", f"{dataset} has no earlier bundle to roll back to")
    previous, *rest = current["previous"]
    check_name(previous.get("bundle_version") if isinstance(previous, dict) else None)
    root = dataset_root(bundles_root, dataset)
    verified = verify_bundle(root / previous["bundle_version"])
    if verified.manifest_sha256 != previous["manifest_sha256"]:
        raise BundleError("bundle_tampered", "the earlier bundle changed since it was active",
                          str(root / previous["bundle_version"]))
    pointer = {"bundle_version": previous["bundle_version"],
               "manifest_sha256": previous["manifest_sha256"], "activated_at": now_iso(),
               "rolled_back_from": current["bundle_version"], "previous": rest}
    atomic_write(root / POINTER, dumps_canonical(pointer).encode("utf-8"))
    return pointer


@dataclass(frozen=True)
class ResolvedBundle:
    """Where a bundle is, and the manifest digest its ACTIVE pointer pins (None: named by path)."""

    path: Path
    pinned_manifest_sha256: str | None


def resolve_bundle(source: str | Path, bundles_root: str | Path = "bundles") -> ResolvedBundle:
    """The one resolver: a bundle directory, or a dataset name through its ACTIVE pointer.

    A directory holding a manifest wins; then a dataset with an ACTIVE pointer (checked by
    `read_active`, whose BundleError propagates); then any other directory, which verification
    refuses with its own reason. Anything else is `model_unavailable`.
    """
    path = Path(source)
    if (path / MANIFEST).exists():
        return ResolvedBundle(path, None)
    pointer = read_active(bundles_root, str(source)) if NAME.fullmatch(str(source)) else None
    if pointer is not None:
        return ResolvedBundle(pointer.bundle_dir, pointer.manifest_sha256)
    if path.is_dir():
        return ResolvedBundle(path, None)
    raise BundleError("model_unavailable", f"{source!s} is neither a bundle directory nor a "
                                           f"dataset with an active bundle under {bundles_root}")
