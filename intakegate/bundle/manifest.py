"""The manifest schema: what a bundle promises, checked strictly before anything else reads it.

Why: every stage (train writes it, export and pack rewrite it, the runtime serves from it) must
agree on one schema; a deviation is `manifest_invalid` naming the file and field, and a bundle of
another format version is refused with what to do.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from intakegate.bundle.errors import BundleError
from intakegate.bundle.hashing import atomic_write, file_table, sha256_bytes
from intakegate.bundle.paths import FORBIDDEN_SUFFIXES, MANIFEST, MAX_MANIFEST_BYTES, check_relpath
from intakegate.errors import InputError
from intakegate.jsonio import dumps_canonical, loads_strict
from intakegate.vocab import FALLBACK_ROUTE, GateDecision, Route

# 2: the input policy carries the segmentation (every segment of a ticket is scored).
# 3: self-contained: receipt/fixtures.jsonl, eval/rows.json, text digests and shadow floors in
#    the receipt spec; int8 `gates` keyed per CPU family; slim packs (`derived_from`).
FORMAT_VERSION = 3
FORMAT_CHANGES = {2: "format 2 bundles read their fixture texts from the shipped dataset; "
                     "retrain (intakegate train) to write a self-contained format 3 bundle"}


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

def now_iso() -> str:
    """The UTC timestamp, to the second, that manifests and pointers record."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


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

