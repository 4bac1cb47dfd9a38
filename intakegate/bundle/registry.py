"""The ACTIVE registry: which bundle of a dataset serves, activation, rollback and listing.

`ACTIVE` is a small JSON file beside the bundles that anyone with write access to the folder can
edit. A pointer must name a plain version (a direct child of the dataset's folder, no
separators, no `..`) and carry the 64-hex manifest digest the loader then requires; anything
else fails closed as `pointer_invalid`. It is replaced atomically under a lock, so activation
and rollback always switch the whole contract, never the weights alone.
"""

from __future__ import annotations

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
class PointerEntry:
    """One bundle a pointer names, pinned to its manifest digest (current or rollback history)."""

    bundle_version: str
    manifest_sha256: str

    def to_json(self) -> dict[str, str]:
        return {"bundle_version": self.bundle_version, "manifest_sha256": self.manifest_sha256}


@dataclass(frozen=True)
class Pointer:
    """A checked ACTIVE pointer: which bundle, pinned to which digest, and what came before."""

    dataset: str
    current: PointerEntry
    bundle_dir: Path
    previous: tuple[PointerEntry, ...] = ()
    activated_at: str | None = None
    rolled_back_from: str | None = None

    @property
    def bundle_version(self) -> str:
        return self.current.bundle_version

    @property
    def manifest_sha256(self) -> str:
        return self.current.manifest_sha256

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {**self.current.to_json(),
                                  "previous": [e.to_json() for e in self.previous]}
        if self.activated_at is not None:
            out["activated_at"] = self.activated_at
        if self.rolled_back_from is not None:
            out["rolled_back_from"] = self.rolled_back_from
        return out


def check_name(name: object, what: str = "bundle version") -> str:
    """A dataset or version name is one plain path component (what `activate` accepts)."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise BundleError("pointer_invalid", f"{what} {name!r} is not a plain name "
                                             f"(letters, digits, '.', '_', '-')")
    return name


def _entry(obj: object, path: Path) -> PointerEntry:
    if not isinstance(obj, dict):
        raise BundleError("pointer_invalid", "an ACTIVE entry is not an object", str(path))
    version = check_name(obj.get("bundle_version"))
    digest = obj.get("manifest_sha256")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise BundleError("pointer_invalid", f"ACTIVE entry {version!r} carries no "
                                             f"manifest_sha256 digest; re-run `intakegate "
                                             f"bundles activate`", str(path))
    return PointerEntry(version, digest)


def _optional_str(obj: dict[str, Any], key: str, path: Path) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise BundleError("pointer_invalid", f"ACTIVE field {key!r} is not a string", str(path))
    return value


def parse_pointer(bundles_root: str | Path, dataset: str) -> Pointer | None:
    """The dataset's ACTIVE file parsed and checked field by field; None when there is none.

    Names must be plain, digests 64-hex, history entries likewise (`pointer_invalid`); a file
    that is not JSON at all (e.g. truncated to 0 bytes) is `model_unavailable`. Whether the
    named directory exists is `read_active`'s check: activation may replace a pointer whose
    bundle was deleted.
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
    history = obj.get("previous", [])
    if not isinstance(history, list):
        raise BundleError("pointer_invalid", "ACTIVE field 'previous' is not a list", str(path))
    current = _entry(obj, path)
    return Pointer(dataset, current, root / current.bundle_version,
                   tuple(_entry(e, path) for e in history),
                   _optional_str(obj, "activated_at", path),
                   _optional_str(obj, "rolled_back_from", path))


def read_active(bundles_root: str | Path, dataset: str) -> Pointer | None:
    """The dataset's checked pointer, naming a bundle directory right inside the dataset's
    folder; None when there is none.

    Raises BundleError `pointer_invalid` for a pointer that names a path, has no digest, or
    names something that is not a bundle directory; `model_unavailable` for one that cannot be
    read as JSON at all or names a bundle that is not there.
    """
    pointer = parse_pointer(bundles_root, dataset)
    if pointer is None:
        return None
    root, target = pointer.bundle_dir.parent, pointer.bundle_dir
    try:
        tst = os.lstat(target)
    except FileNotFoundError:
        raise BundleError("model_unavailable", f"ACTIVE names {pointer.bundle_version!r}, "
                                               f"which is not there", str(root)) from None
    if not stat.S_ISDIR(tst.st_mode):
        raise BundleError("pointer_invalid", f"ACTIVE names {pointer.bundle_version!r}, which "
                                             f"is not a bundle directory inside {root}",
                          str(root / POINTER))
    return pointer


def write_pointer(pointer: Pointer) -> None:
    """Replace the dataset's ACTIVE atomically (callers hold `pointer_lock`)."""
    atomic_write(pointer.bundle_dir.parent / POINTER,
                 dumps_canonical(pointer.to_json()).encode("utf-8"))


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


def _active_version(bundles_root: Path, dataset: str) -> str | None:
    try:
        pointer = parse_pointer(bundles_root, dataset)
    except BundleError:
        return None  # a broken pointer serves nothing; the router says why
    return None if pointer is None else pointer.bundle_version


def list_bundles(bundles_root: str | Path) -> list[dict[str, Any]]:
    """Every bundle under the root, with its decision and whether it is active."""
    out = []
    root = Path(bundles_root)
    if not root.is_dir():
        return out
    for manifest_path in sorted(root.glob(f"*/*/{MANIFEST}")):
        bundle_dir = manifest_path.parent
        dataset = bundle_dir.parent.name
        active = _active_version(root, dataset)
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
                    "active": active == bundle_dir.name, "path": str(bundle_dir)})
    return out


def activate(bundles_root: str | Path, dataset: str, bundle_version: str) -> Pointer:
    """Point the dataset's ACTIVE at a verified, eligible bundle; keep the previous for rollback.

    A pointer that cannot be parsed is replaced (activation is how it is repaired), with no
    history: nothing in it can be trusted to roll back to."""
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
        try:
            current = parse_pointer(bundles_root, dataset)
        except BundleError:
            current = None
        history = () if current is None else (current.current, *current.previous)
        pointer = Pointer(dataset, PointerEntry(bundle_version, verified.manifest_sha256),
                          target, history[:10], now_iso())
        write_pointer(pointer)
    return pointer


def rollback(bundles_root: str | Path, dataset: str) -> Pointer:
    """Re-activate the previous bundle as a whole (model, tokenizer, threshold, fallback)."""
    check_name(dataset, "dataset")
    with pointer_lock(dataset_root(bundles_root, dataset)):
        return _rollback_locked(bundles_root, dataset)


def _rollback_locked(bundles_root: str | Path, dataset: str) -> Pointer:
    current = parse_pointer(bundles_root, dataset)
    if current is None or not current.previous:
        raise BundleError("model_unavailable", f"{dataset} has no earlier bundle to roll back to")
    previous, *rest = current.previous
    target = dataset_root(bundles_root, dataset) / previous.bundle_version
    verified = verify_bundle(target)
    if verified.manifest_sha256 != previous.manifest_sha256:
        raise BundleError("bundle_tampered", "the earlier bundle changed since it was active",
                          str(target))
    pointer = Pointer(dataset, previous, target, tuple(rest), now_iso(),
                      current.bundle_version)
    write_pointer(pointer)
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
