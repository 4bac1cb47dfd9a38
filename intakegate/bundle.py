"""The serving bundle on disk: one manifest that binds model, tokenizer, threshold and fallback.

Train writes a bundle directory, export adds artifacts to it, the runtime reads it. The manifest
lists the size and sha256 of every other file in the directory, so a bundle verifies as a whole:
an extra, missing, renamed, changed or special file refuses it. The active bundle of a dataset is
named by a pointer file that is replaced atomically, so activation and rollback always switch the
whole contract, never the weights alone.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

from intakegate.errors import InputError
from intakegate.jsonio import dumps_canonical, loads_strict
from intakegate.vocab import FALLBACK_ROUTE, GateDecision, Route

# 2: the input policy carries the segmentation (every segment of a ticket is scored).
# 3: self-contained: receipt/fixtures.jsonl, eval/rows.json, text digests and shadow floors in
#    the receipt spec; int8 `gates` keyed per CPU family; slim packs (`derived_from`).
FORMAT_VERSION = 3
FORMAT_CHANGES = {2: "format 2 bundles read their fixture texts from the shipped dataset; "
                     "retrain (intakegate train) to write a self-contained format 3 bundle"}
MANIFEST = "manifest.json"
# The detached signature over the manifest digest (intakegate.signing); it cannot be listed in
# the manifest it signs, and it is only ever parsed as a small strict JSON signature.
SIGNATURE = "manifest.sig"
POINTER = "ACTIVE"
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
ALLOWED_SUFFIXES = {".json", ".md", ".csv", ".png", ".onnx", ".safetensors", ".txt", ".bin",
                    ".mlmodel", ".jsonl"}
# Code files are refused like pickles: nothing in a bundle may be importable or executable
# (a transformers `auto_map` would otherwise run a listed .py file at load).
CODE_SUFFIXES = {".py", ".pyc", ".pyo", ".pyd", ".so", ".dylib", ".dll", ".exe", ".sh", ".bat",
                 ".cmd", ".ps1", ".js", ".jar", ".whl", ".egg"}
FORBIDDEN_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", *CODE_SUFFIXES}


class Status(str, Enum):
    """Shipping status of one artifact in a bundle."""

    ELIGIBLE = GateDecision.ELIGIBLE_FOR_SHADOW.value
    HOLD = GateDecision.HOLD.value
    PENDING_REGATE = "pending_regate"


class Artifact(str, Enum):
    """The artifacts a bundle can carry."""

    TORCH_FP32 = "torch-fp32"
    ONNX_FP32 = "onnx-fp32"
    ONNX_INT8 = "onnx-int8"
    COREML_FP16 = "coreml-fp16"
    COREML_INT8 = "coreml-int8"


class BundleError(Exception):
    """A bundle that cannot be trusted. `code` is the fail-closed reason."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        self.code = code
        self.path = path
        super().__init__(f"{code}: {message}" + (f" ({path})" if path else ""))


REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "bundle_version": str,
    "dataset": str,
    "dataset_version": str,
    "label_version": str,
    "validation_receipt_version": str,
    "split_manifest_version": str,
    "tokenizer_version": str,
    "model_version": str,
    "base_model": str,
    "input_policy_version": str,
    "input_policy": dict,
    "max_length": int,
    "threshold": float,
    "tie_rule": str,
    "fallback_route": str,
    "allowed_routes": list,
    "downstream_consumer": str,
    "decision": str,
    "decision_reason": str,
    "created_at": str,
    "model_kind": str,
    "tokenizer": str,
    "receipt": str,
    "score_head": dict,
    "artifacts": dict,
    "files": list,
}
OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {"notes": list, "documents": dict,
                                                    "score_blend": dict,
                                                    # intakegate.tokenizer_pins
                                                    "tokenizer_pins": dict,
                                                    # intakegate.logit_range
                                                    "logit_range": dict,
                                                    # a slim pack: intakegate.pack
                                                    "derived_from": dict}
ARTIFACT_FIELDS = {"format", "precision", "path", "sha256", "size_bytes", "status", "reason",
                   "receipt_run", "gated_with", "drift", "tool_versions", "export_settings",
                   "model_sha256", "device_classes", "gates", "note"}
POLICY_FIELDS = {"trim_outer_whitespace", "preserve_punctuation", "max_length", "long_input",
                 "stride", "max_windows", "char_cap", "normalization", "strip_controls",
                 "segmentation", "max_run_chars"}
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}


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


def check_relpath(rel: str) -> None:
    """Manifest paths are relative POSIX paths that stay inside the bundle."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise BundleError("manifest_bad_path", f"bad path {rel!r}")
    if "\\" in rel or ":" in rel or rel.startswith("/") or rel != rel.strip():
        raise BundleError("manifest_bad_path", f"path {rel!r} is not a relative POSIX path")
    parts = PurePosixPath(rel).parts
    if any(p in ("", ".", "..") for p in parts) or "//" in rel:
        raise BundleError("manifest_bad_path", f"path {rel!r} leaves or aliases the bundle")
    if any(p.split(".")[0].lower() in _RESERVED for p in parts):
        raise BundleError("manifest_bad_path", f"path {rel!r} uses a reserved name")


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


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------------------------------------
# Manifest schema


def validate_manifest(obj: Any, where: str = MANIFEST) -> dict[str, Any]:
    """Strict schema check. Any deviation is `manifest_invalid`, naming the field."""
    def bad(field: str, msg: str) -> BundleError:
        return BundleError("manifest_invalid", f"field '{field}': {msg}", where)

    if not isinstance(obj, dict):
        raise bad("<root>", "must be an object")
    unknown = sorted(set(obj) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise bad(unknown[0], "unknown field")
    for key, kind in REQUIRED_FIELDS.items():
        if key not in obj:
            raise bad(key, "missing")
        value = obj[key]
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise bad(key, f"expected {getattr(kind, '__name__', kind)}")
    for key, kind in OPTIONAL_FIELDS.items():
        if key in obj and not isinstance(obj[key], kind):
            raise bad(key, "wrong type")
    if obj["format_version"] != FORMAT_VERSION:
        raise BundleError("manifest_invalid",
                          f"bundle format {obj['format_version']} is not supported by this "
                          f"intakegate (supports {FORMAT_VERSION}); "
                          f"{FORMAT_CHANGES.get(obj['format_version'], 'rebuild the bundle')}",
                          where)
    threshold = float(obj["threshold"])
    if not 0.0 < threshold < 1.0:
        raise bad("threshold", f"{threshold} is not in (0, 1)")
    if obj["fallback_route"] != FALLBACK_ROUTE.value:
        raise bad("fallback_route", "must be human_review_now: the fallback never sends a "
                                    "ticket to the agent")
    if sorted(obj["allowed_routes"]) != sorted(r.value for r in Route):
        raise bad("allowed_routes", "must be exactly the two routes")
    if obj["tie_rule"] != ">=":
        raise bad("tie_rule", "a score equal to the threshold escalates ('>=')")
    if obj["decision"] not in (d.value for d in GateDecision):
        raise bad("decision", "unknown decision")
    policy = obj["input_policy"]
    unknown_policy = sorted(set(policy) - POLICY_FIELDS)
    if unknown_policy:
        raise bad(f"input_policy.{unknown_policy[0]}", "unknown field")
    if not isinstance(policy.get("segmentation"), dict):
        raise bad("input_policy.segmentation", "missing: this bundle format scores every "
                                               "segment of a ticket")
    if policy.get("max_length") != obj["max_length"] or not 8 <= obj["max_length"] <= 4096:
        raise bad("input_policy.max_length", "must equal max_length, in [8, 4096]")
    for name, art in obj["artifacts"].items():
        try:
            Artifact(name)
        except ValueError:
            raise bad(f"artifacts.{name}", "unknown artifact") from None
        if not isinstance(art, dict):
            raise bad(f"artifacts.{name}", "must be an object")
        extra = sorted(set(art) - ARTIFACT_FIELDS)
        if extra:
            raise bad(f"artifacts.{name}.{extra[0]}", "unknown field")
        for key in ("format", "precision", "path", "sha256", "status"):
            if not isinstance(art.get(key), str):
                raise bad(f"artifacts.{name}.{key}", "missing or not a string")
        if art["status"] not in (s.value for s in Status):
            raise bad(f"artifacts.{name}.status", "unknown status")
        check_relpath(art["path"])
    for i, entry in enumerate(obj["files"]):
        if (not isinstance(entry, dict) or set(entry) != {"path", "size", "sha256"}
                or not isinstance(entry["size"], int) or not isinstance(entry["sha256"], str)
                or not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])):
            raise bad(f"files[{i}]", "must be {path, size, sha256}")
        check_relpath(entry["path"])
    paths = [e["path"] for e in obj["files"]]
    if len(set(paths)) != len(paths):
        raise bad("files", "duplicate path")
    for key in ("tokenizer", "receipt"):
        check_relpath(obj[key])
    return obj


def parse_manifest_bytes(data: bytes, where: str = MANIFEST) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError("manifest_invalid", "manifest too large", where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError("manifest_invalid", "manifest is not UTF-8", where) from None
    try:
        obj = loads_strict(text, path=where)
    except InputError as exc:
        raise BundleError("manifest_invalid", str(exc), where) from None
    return validate_manifest(obj, where)


def write_manifest(bundle_dir: Path, manifest: Mapping[str, Any]) -> str:
    """Recompute the file table, validate, write atomically; returns the manifest sha256."""
    body = dict(manifest)
    for name in ("tokenizer", "receipt"):
        if name not in body:
            raise BundleError("manifest_invalid", f"field '{name}' missing")
    body["files"] = [e.to_json() for e in file_table(bundle_dir)]
    for ext in {Path(e["path"]).suffix for e in body["files"]}:
        if ext in FORBIDDEN_SUFFIXES:
            raise BundleError("format_not_allowed", f"{ext} files are never shipped")
    validate_manifest(body)
    data = dumps_canonical(body).encode("utf-8")
    atomic_write(bundle_dir / MANIFEST, data)
    return sha256_bytes(data)


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every file matched its manifest entry at verification time."""

    root: Path
    manifest: Mapping[str, Any]
    manifest_sha256: str

    def read(self, rel: str) -> bytes:
        """Read a listed file and re-check its digest: callers load from these very bytes."""
        entry = next((e for e in self.manifest["files"] if e["path"] == rel), None)
        if entry is None:
            raise BundleError("bundle_missing_file", "not listed in the manifest", rel)
        path = self.root / rel
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError("bundle_special_file", "not a regular file", rel)
        if st.st_size != entry["size"]:
            raise BundleError("bundle_size_mismatch", "size changed", rel)
        data = path.read_bytes()
        if sha256_bytes(data) != entry["sha256"]:
            raise BundleError("bundle_tampered", "sha256 mismatch", rel)
        return data

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def bundle_version(self) -> str:
        return str(self.manifest["bundle_version"])


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
    listed = {e["path"]: e for e in manifest["files"]}
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
        if path.stat().st_size != listed[rel]["size"]:
            raise BundleError("bundle_size_mismatch", "size differs from the manifest", rel)
    digests = sha256_files(on_disk)
    for rel in sorted(on_disk):
        if digests[rel] != listed[rel]["sha256"]:
            raise BundleError("bundle_tampered", "sha256 differs from the manifest", rel)
    return VerifiedBundle(root, manifest, sha256_bytes(data))


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


# ---------------------------------------------------------------------------------------------
# Active pointer: activation and rollback


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
            m = json.loads(manifest_path.read_text(encoding="utf-8"))
            decision, reason, thr = m.get("decision"), m.get("decision_reason"), m.get("threshold")
            artifacts = {k: v.get("status") for k, v in m.get("artifacts", {}).items()}
        except (OSError, ValueError):
            decision, reason, thr, artifacts = "unreadable", "", None, {}
        out.append({"dataset": dataset, "bundle_version": bundle_dir.name, "decision": decision,
                    "reason": reason, "threshold": thr, "artifacts": artifacts,
                    "active": bool(pointer and pointer["bundle_version"] == bundle_dir.name),
                    "path": str(bundle_dir)})
    return out


def activate(bundles_root: str | Path, dataset: str, bundle_version: str) -> dict[str, Any]:
    """Point the dataset's ACTIVE at a verified, eligible bundle; keep the previous for rollback."""
    from intakegate.pointer import check_name

    check_name(dataset, "dataset")
    check_name(bundle_version)  # the same rule the router applies when it reads ACTIVE
    root = dataset_root(bundles_root, dataset)
    target = root / bundle_version
    if not target.is_dir() or target.is_symlink() or target.parent != root:
        raise BundleError("model_unavailable", f"no bundle {bundle_version!r}", str(root))
    verified = verify_bundle(target)
    if verified.manifest["decision"] != GateDecision.ELIGIBLE_FOR_SHADOW.value:
        raise BundleError("artifact_held", f"bundle {bundle_version} is held: "
                                           f"{verified.manifest['decision_reason']}", str(target))
    from intakegate.pointer import pointer_lock

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
    from intakegate.pointer import check_name, pointer_lock

    check_name(dataset, "dataset")
    with pointer_lock(dataset_root(bundles_root, dataset)):
        return _rollback_locked(bundles_root, dataset)


def _rollback_locked(bundles_root: str | Path, dataset: str) -> dict[str, Any]:
    current = read_pointer(bundles_root, dataset)
    if current is None or not current.get("previous"):
        raise BundleError("model_unavailable", f"{dataset} has no earlier bundle to roll back to")
    previous, *rest = current["previous"]
    from intakegate.pointer import check_name

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


def resolve_bundle(name_or_path: str | Path, bundles_root: str | Path = "bundles") -> Path:
    """A bundle directory, or a dataset name resolved through its ACTIVE pointer."""
    path = Path(name_or_path)
    if (path / MANIFEST).exists():
        return path
    from intakegate.pointer import NAME, read_active

    pointer = read_active(bundles_root, str(name_or_path)) if NAME.fullmatch(
        str(name_or_path)) else None
    if pointer is None:
        raise BundleError("model_unavailable",
                          f"{name_or_path!s} is neither a bundle directory nor a dataset with an "
                          f"active bundle under {bundles_root}")
    return pointer.bundle_dir
