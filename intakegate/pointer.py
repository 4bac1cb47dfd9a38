"""The dataset's ACTIVE pointer, read under the same rules `bundles activate` writes it by.

`ACTIVE` is a small JSON file beside the bundles that anyone with write access to the folder can
edit. The router used to follow whatever it named: `../../elsewhere`, an absolute path, or a
bundle with no digest (loaded unpinned). Now a pointer must name a plain version (a direct child
of the dataset's folder, no separators, no `..`) and carry the 64-hex manifest digest the loader
then requires; anything else fails closed as `pointer_invalid`.
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

from intakegate.bundle import POINTER, BundleError, dataset_root

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
    from intakegate.errors import InputError
    from intakegate.jsonio import loads_strict

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


LOCK_NAME = "ACTIVE.lock"
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
        fd = os.open(Path(dataset_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
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
