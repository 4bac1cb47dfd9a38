"""Digests of bundle files and the atomic writes that replace them.

Why: a bundle verifies as a whole because every file is listed with its size and sha256; the
walk that lists them refuses symlinks, hard links and special files, so what is hashed is what
is read.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.bundle.errors import BundleError
from intakegate.bundle.paths import MANIFEST, SIGNATURE, check_relpath


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()



def walk_files(root: Path) -> dict[str, Path]:
    """Every regular file under `root` (lstat walk); symlinks and special files are refused."""
    out: dict[str, Path] = {}
    stack = [root]
    while stack:
        current = stack.pop()
        for entry in sorted(os.scandir(current), key=lambda e: e.name):
            path = Path(entry.path)
            st = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise BundleError("bundle_special_file", "symlink in bundle", rel)
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    raise BundleError("bundle_special_file", "hard-linked file in bundle", rel)
                out[rel] = path
            else:
                raise BundleError("bundle_special_file", "special file in bundle", rel)
    return out


def file_table(bundle_dir: Path) -> list[FileEntry]:
    """Size and sha256 of every file except the manifest itself."""
    entries = []
    for rel, path in sorted(walk_files(bundle_dir).items()):
        if rel in (MANIFEST, SIGNATURE):
            continue
        check_relpath(rel)
        entries.append(FileEntry(rel, path.stat().st_size, sha256_file(path)))
    return entries


def tree_sha256(bundle_dir: Path, prefix: str) -> tuple[str, int]:
    """One digest for a file or a directory tree (e.g. an .mlpackage), and its total size."""
    target = bundle_dir / prefix
    if target.is_file():
        return sha256_file(target), target.stat().st_size
    digest = hashlib.sha256()
    size = 0
    for rel, path in sorted(walk_files(target).items()):
        digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
        size += path.stat().st_size
    return digest.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write, fsync, then os.replace: readers see the old or the new file, never a mix."""
    # Unique per write: threads of one process (and processes) never share a temp file.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}-"
                         f"{secrets.token_hex(4)}")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Disk full or killed mid-write: the old file stays, the partial copy goes.
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)



def sha256_files(paths: Mapping[str, Path]) -> dict[str, str]:
    """Hash files on parallel threads (hashlib releases the GIL on large blocks): a bundle
    holds several artifacts, and hashing all of them is most of a router's cold start."""
    from concurrent.futures import ThreadPoolExecutor

    order = sorted(paths, key=lambda rel: -paths[rel].stat().st_size)  # largest first
    workers = max(1, min(len(order), os.cpu_count() or 1, 8))
    if workers == 1:
        return {rel: sha256_file(paths[rel]) for rel in order}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bundle-hash") as pool:
        return dict(zip(order, pool.map(lambda rel: sha256_file(paths[rel]), order)))

