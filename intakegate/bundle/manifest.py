"""The typed manifest: what a bundle promises, parsed and validated once.

Why: every stage (train writes it, export, gate and pack rewrite it, the runtime and the bench
serve from it) used to index a `dict[str, Any]` by string, each with its own idea of which keys
exist. `Manifest.parse` checks the whole schema once and returns frozen records (`Manifest`,
`ArtifactEntry`, `GateEntry`, ...); a deviation is `manifest_invalid` naming the file and field,
and a bundle of another format version is refused with what to do. `to_json` writes the same
JSON that format 3 defined, so the typed manifest did not change the format version.

Free-form records that no stage interprets (tool versions, export settings, drift summaries)
and those owned by their own module's parser (`tokenizer_pins`: intakegate.scoring.tokenizer_pins,
`logit_range`: intakegate.scoring.logit_range) are kept as read-only JSON objects.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from intakegate.bundle.errors import BundleError
from intakegate.bundle.hashing import FileEntry, atomic_write, file_table, sha256_bytes
from intakegate.bundle.paths import FORBIDDEN_SUFFIXES, MANIFEST, MAX_MANIFEST_BYTES, check_relpath
from intakegate.errors import InputError
from intakegate.hardware import cpu_gate_key, gate_cpu_family, inexact_dot_refusal
from intakegate.jsonio import dumps_canonical, loads_strict
from intakegate.vocab import FALLBACK_ROUTE, GateDecision, Route

if TYPE_CHECKING:  # intakegate.scoring.encoding imports numpy; the CLI reads bundles without it
    from intakegate.scoring.encoding import InputPolicy

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
    ONNX_INT8_VNNI = "onnx-int8-vnni"
    COREML_FP16 = "coreml-fp16"
    COREML_INT8 = "coreml-int8"


# Full-range int8 artifacts: faster where integer dot products are exact, refused elsewhere.
FULL_RANGE_INT8 = frozenset({Artifact.ONNX_INT8_VNNI})


def cpu_family_exactness_refusal(artifact: str, family: str) -> str | None:
    """The one rule export, gate and router share: a full-range int8 artifact runs (and is
    gated) only on a CPU family whose dot products are exact; None when `artifact` may."""
    if artifact not in {a.value for a in FULL_RANGE_INT8}:
        return None
    return inexact_dot_refusal(artifact, family)


def now_iso() -> str:
    """The UTC timestamp, to the second, that manifests and pointers record."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


_POLICY_FIELDS = frozenset({"trim_outer_whitespace", "preserve_punctuation", "max_length",
                            "long_input", "stride", "max_windows", "char_cap", "normalization",
                            "strip_controls", "segmentation", "max_run_chars",
                            "model_runs"})
_GATE_FIELDS = frozenset({"decision", "reason", "when", "receipt_run", "max_abs_delta",
                          "route_flips"})
_ARTIFACT_FIELDS = frozenset({"format", "precision", "path", "sha256", "size_bytes", "status",
                              "reason", "receipt_run", "gated_with", "drift", "tool_versions",
                              "export_settings", "model_sha256", "device_classes", "gates",
                              "note"})
_BLEND_FIELDS = frozenset({"rule", "lexical", "lexical_kind", "encoder_weight", "chosen_on"})
_DERIVED_FIELDS = frozenset({"manifest_sha256", "bundle_version", "artifact", "with_fixtures",
                             "packed_at"})
_HEAD_FIELDS = frozenset({"labels", "positive"})
_MANIFEST_FIELDS = frozenset({
    "format_version", "bundle_version", "dataset", "dataset_version", "label_version",
    "validation_receipt_version", "split_manifest_version", "tokenizer_version",
    "model_version", "base_model", "input_policy_version", "input_policy", "max_length",
    "threshold", "tie_rule", "fallback_route", "allowed_routes", "downstream_consumer",
    "decision", "decision_reason", "created_at", "model_kind", "tokenizer", "receipt",
    "score_head", "artifacts", "files", "notes", "documents", "score_blend", "tokenizer_pins",
    "logit_range", "derived_from"})
_DIGEST = re.compile(r"[0-9a-f]{64}")
JsonObject = Mapping[str, Any]


def _bad(where: str, name: str, msg: str) -> BundleError:
    return BundleError("manifest_invalid", f"field '{name}': {msg}", where)


class _Fields:
    """One JSON object of the manifest: typed reads that name the file and field on error."""

    def __init__(self, obj: object, prefix: str, where: str, known: frozenset[str]) -> None:
        if not isinstance(obj, dict):
            raise _bad(where, prefix.rstrip(".") or "<root>", "must be an object")
        unknown = sorted(set(obj) - known)
        if unknown:
            raise _bad(where, prefix + str(unknown[0]), "unknown field")
        self.obj, self.prefix, self.where = obj, prefix, where

    def bad(self, key: str, msg: str) -> BundleError:
        return _bad(self.where, self.prefix + key, msg)

    def get(self, key: str, kind: type, required: bool = True) -> Any:
        """The value, checked against `kind` (float accepts int; bool is never an int/str)."""
        value = self.obj.get(key)
        if value is None:
            if required:
                raise self.bad(key, "missing")
            return None
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise self.bad(key, f"expected {kind.__name__}")
        return float(value) if kind is float else value

    def path(self, key: str, required: bool = True) -> str | None:
        """A bundle-relative path (the rule in intakegate.bundle.paths)."""
        value = self.get(key, str, required)
        if value is not None:
            check_relpath(value)
        return value

    def strings(self, key: str, required: bool = True) -> tuple[str, ...] | None:
        value = self.get(key, list, required)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            raise self.bad(key, "must be a list of strings")
        return tuple(value)

    def json_object(self, key: str) -> JsonObject | None:
        value = self.get(key, dict, False)
        return None if value is None else MappingProxyType(dict(value))


@dataclass(frozen=True)
class GateEntry:
    """One runtime's receipt result in an artifact's `gates` map (keyed by the runtime)."""

    decision: str
    reason: str
    when: str | None = None
    receipt_run: str | None = None
    max_abs_delta: float | None = None
    route_flips: tuple[str, ...] | None = None

    @property
    def eligible(self) -> bool:
        return self.decision == Status.ELIGIBLE.value

    @classmethod
    def parse(cls, obj: object, prefix: str, where: str) -> GateEntry:
        f = _Fields(obj, prefix, where, _GATE_FIELDS)
        decision = f.get("decision", str)
        if decision not in (s.value for s in Status):
            raise f.bad("decision", "unknown decision")
        return cls(decision, f.get("reason", str), f.get("when", str, False),
                   f.path("receipt_run", False), f.get("max_abs_delta", float, False),
                   f.strings("route_flips", False))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.decision, "reason": self.reason,
                               "receipt_run": self.receipt_run}
        if self.when is not None:
            out["when"] = self.when
        if self.max_abs_delta is not None or self.route_flips is not None:
            out["max_abs_delta"] = self.max_abs_delta
            out["route_flips"] = list(self.route_flips or ())
        return out


@dataclass(frozen=True)
class ArtifactEntry:
    """One artifact of a bundle: where it is, its digest, and the receipt in force for it."""

    format: str
    precision: str
    path: str
    sha256: str
    status: Status
    reason: str | None = None
    receipt_run: str | None = None
    gated_with: str | None = None
    model_sha256: str | None = None
    size_bytes: int | None = None
    # `cpu`, `cuda`, `mps` (a device class) or `cpu-x86_64`-style (one machine type); None: the
    # receipt does not say where it was computed.
    device_classes: tuple[str, ...] | None = None
    gates: Mapping[str, GateEntry] = field(default_factory=lambda: MappingProxyType({}))
    drift: JsonObject | None = None  # export.drift summary, shown by reports
    tool_versions: JsonObject | None = None
    export_settings: JsonObject | None = None
    note: str | None = None

    @property
    def eligible(self) -> bool:
        return self.status is Status.ELIGIBLE

    @property
    def quantized(self) -> bool:
        """int8 or fp16 drift by hardware: they must name the hardware they were gated on."""
        return self.precision.lower() not in ("fp32", "")

    def gated_cpu_families(self) -> list[str]:
        """The CPU families whose receipt in the `gates` map passed (sorted)."""
        return sorted(str(gate_cpu_family(key)) for key, gate in self.gates.items()
                      if gate_cpu_family(key) and gate.eligible)

    def family_gate(self, family: str) -> GateEntry | None:
        """This CPU family's own receipt result, when one was recorded."""
        return self.gates.get(cpu_gate_key(family))

    @classmethod
    def parse(cls, obj: object, prefix: str, where: str) -> ArtifactEntry:
        f = _Fields(obj, prefix, where, _ARTIFACT_FIELDS)
        try:
            status = Status(f.get("status", str))
        except ValueError:
            raise f.bad("status", "unknown status") from None
        gates = f.get("gates", dict, False) or {}
        return cls(f.get("format", str), f.get("precision", str), str(f.path("path")),
                   f.get("sha256", str), status, f.get("reason", str, False),
                   f.path("receipt_run", False), f.get("gated_with", str, False),
                   f.get("model_sha256", str, False), f.get("size_bytes", int, False),
                   f.strings("device_classes", False),
                   MappingProxyType({str(k): GateEntry.parse(v, f"{prefix}gates.{k}.", where)
                                     for k, v in gates.items()}),
                   f.json_object("drift"), f.json_object("tool_versions"),
                   f.json_object("export_settings"), f.get("note", str, False))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "precision": self.precision,
                               "path": self.path, "sha256": self.sha256,
                               "status": self.status.value, "reason": self.reason,
                               "receipt_run": self.receipt_run, "gated_with": self.gated_with,
                               "drift": None if self.drift is None else dict(self.drift)}
        optional = {"model_sha256": self.model_sha256, "size_bytes": self.size_bytes,
                    "device_classes": None if self.device_classes is None
                    else list(self.device_classes),
                    "gates": {k: g.to_json() for k, g in self.gates.items()} or None,
                    "tool_versions": None if self.tool_versions is None
                    else dict(self.tool_versions),
                    "export_settings": None if self.export_settings is None
                    else dict(self.export_settings),
                    "note": self.note}
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


@dataclass(frozen=True)
class ScoreHead:
    """The model's labels and which of them escalate to a person."""

    labels: tuple[str, ...]
    positive: tuple[int, ...]

    @classmethod
    def parse(cls, obj: object, where: str) -> ScoreHead:
        f = _Fields(obj, "score_head.", where, _HEAD_FIELDS)
        labels = f.strings("labels") or ()
        positive = f.get("positive", list)
        if not positive or not all(isinstance(p, int) and not isinstance(p, bool)
                                   and 0 <= p < len(labels) for p in positive):
            raise f.bad("positive", "must be label indices")
        return cls(labels, tuple(positive))

    def to_json(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "positive": list(self.positive)}


@dataclass(frozen=True)
class ScoreBlendEntry:
    """The blend of encoder and lexical log-odds (`intakegate.scoring.lexical` reads the file)."""

    lexical: str
    encoder_weight: float
    rule: str | None = None
    lexical_kind: str | None = None
    chosen_on: str | None = None

    @classmethod
    def parse(cls, obj: object, where: str) -> ScoreBlendEntry:
        f = _Fields(obj, "score_blend.", where, _BLEND_FIELDS)
        return cls(str(f.path("lexical")), f.get("encoder_weight", float),
                   f.get("rule", str, False), f.get("lexical_kind", str, False),
                   f.get("chosen_on", str, False))

    def to_json(self) -> dict[str, Any]:
        out = {"rule": self.rule, "lexical": self.lexical, "lexical_kind": self.lexical_kind,
               "encoder_weight": self.encoder_weight, "chosen_on": self.chosen_on}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class DerivedFrom:
    """A slim pack's parent (intakegate.bundle.pack): its manifest digest and what was kept."""

    manifest_sha256: str
    bundle_version: str
    artifact: str
    with_fixtures: bool
    packed_at: str

    @classmethod
    def parse(cls, obj: object, where: str) -> DerivedFrom:
        f = _Fields(obj, "derived_from.", where, _DERIVED_FIELDS)
        digest = f.get("manifest_sha256", str)
        if not _DIGEST.fullmatch(digest):
            raise f.bad("manifest_sha256", "must be a sha256 hex digest")
        return cls(digest, f.get("bundle_version", str), f.get("artifact", str),
                   f.get("with_fixtures", bool), f.get("packed_at", str))

    def to_json(self) -> dict[str, Any]:
        return {"manifest_sha256": self.manifest_sha256, "bundle_version": self.bundle_version,
                "artifact": self.artifact, "with_fixtures": self.with_fixtures,
                "packed_at": self.packed_at}


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest, validated: the contract every stage reads and writes."""

    format_version: int
    bundle_version: str
    dataset: str
    dataset_version: str
    label_version: str
    validation_receipt_version: str
    split_manifest_version: str
    tokenizer_version: str
    model_version: str
    base_model: str
    input_policy_version: str
    input_policy: InputPolicy
    max_length: int
    threshold: float
    tie_rule: str
    fallback_route: str
    allowed_routes: tuple[str, ...]
    downstream_consumer: str
    decision: GateDecision
    decision_reason: str
    created_at: str
    model_kind: str
    tokenizer: str
    receipt: str
    score_head: ScoreHead
    artifacts: Mapping[str, ArtifactEntry]
    files: tuple[FileEntry, ...]
    notes: tuple[str, ...] | None = None
    documents: Mapping[str, str] | None = None
    score_blend: ScoreBlendEntry | None = None
    tokenizer_pins: JsonObject | None = None  # intakegate.scoring.tokenizer_pins parses it
    logit_range: JsonObject | None = None  # intakegate.scoring.logit_range parses it
    derived_from: DerivedFrom | None = None

    @property
    def eligible(self) -> bool:
        return self.decision is GateDecision.ELIGIBLE_FOR_SHADOW

    def file(self, rel: str) -> FileEntry | None:
        """The file table's entry for `rel`, or None when it is not listed."""
        return next((e for e in self.files if e.path == rel), None)

    @property
    def listed(self) -> frozenset[str]:
        return frozenset(e.path for e in self.files)

    @classmethod
    def parse(cls, obj: object, where: str = MANIFEST) -> Manifest:
        """Validate the whole schema once; any deviation is `manifest_invalid` naming the field."""
        if isinstance(obj, dict) and obj.get("format_version") != FORMAT_VERSION:
            version = obj.get("format_version")
            raise BundleError("manifest_invalid",
                              f"bundle format {version!r} is not supported by this intakegate "
                              f"(supports {FORMAT_VERSION}); "
                              f"{FORMAT_CHANGES.get(version, 'rebuild the bundle')}", where)  # type: ignore[arg-type]
        f = _Fields(obj, "", where, _MANIFEST_FIELDS)
        s = {key: f.get(key, str) for key in (
            "bundle_version", "dataset", "dataset_version", "label_version",
            "validation_receipt_version", "split_manifest_version", "tokenizer_version",
            "model_version", "base_model", "input_policy_version", "tie_rule", "fallback_route",
            "downstream_consumer", "decision_reason", "created_at", "model_kind")}
        threshold = f.get("threshold", float)
        if not 0.0 < threshold < 1.0:
            raise f.bad("threshold", f"{threshold} is not in (0, 1)")
        if s["fallback_route"] != FALLBACK_ROUTE.value:
            raise f.bad("fallback_route", "must be human_review_now: the fallback never sends "
                                          "a ticket to the agent")
        routes = f.strings("allowed_routes") or ()
        if sorted(routes) != sorted(r.value for r in Route):
            raise f.bad("allowed_routes", "must be exactly the two routes")
        if s["tie_rule"] != ">=":
            raise f.bad("tie_rule", "a score equal to the threshold escalates ('>=')")
        try:
            decision = GateDecision(f.get("decision", str))
        except ValueError:
            raise f.bad("decision", "unknown decision") from None
        max_length = f.get("max_length", int)
        policy = _parse_policy(f.get("input_policy", dict), max_length, where)
        artifacts = f.get("artifacts", dict)
        for name in artifacts:
            try:
                Artifact(name)
            except ValueError:
                raise f.bad(f"artifacts.{name}", "unknown artifact") from None
        files = _parse_files(f.get("files", list), where)
        documents = f.get("documents", dict, False)
        if documents is not None and not all(isinstance(v, str) for v in documents.values()):
            raise f.bad("documents", "must map names to paths")
        blend = f.get("score_blend", dict, False)
        derived = f.get("derived_from", dict, False)
        return cls(
            FORMAT_VERSION, s["bundle_version"], s["dataset"], s["dataset_version"],
            s["label_version"], s["validation_receipt_version"], s["split_manifest_version"],
            s["tokenizer_version"], s["model_version"], s["base_model"],
            s["input_policy_version"], policy, max_length, threshold, s["tie_rule"],
            s["fallback_route"], routes, s["downstream_consumer"], decision,
            s["decision_reason"], s["created_at"], s["model_kind"], str(f.path("tokenizer")),
            str(f.path("receipt")), ScoreHead.parse(f.get("score_head", dict), where),
            MappingProxyType({name: ArtifactEntry.parse(a, f"artifacts.{name}.", where)
                              for name, a in artifacts.items()}),
            files, f.strings("notes", False),
            None if documents is None else MappingProxyType(dict(documents)),
            None if blend is None else ScoreBlendEntry.parse(blend, where),
            f.json_object("tokenizer_pins"), f.json_object("logit_range"),
            None if derived is None else DerivedFrom.parse(derived, where))

    def to_json(self) -> dict[str, Any]:
        """The manifest as format 3 JSON (what `write_manifest` hashes and writes)."""
        out: dict[str, Any] = {
            "format_version": self.format_version, "bundle_version": self.bundle_version,
            "dataset": self.dataset, "dataset_version": self.dataset_version,
            "label_version": self.label_version,
            "validation_receipt_version": self.validation_receipt_version,
            "split_manifest_version": self.split_manifest_version,
            "tokenizer_version": self.tokenizer_version, "model_version": self.model_version,
            "base_model": self.base_model, "input_policy_version": self.input_policy_version,
            "input_policy": self.input_policy.to_json(), "max_length": self.max_length,
            "threshold": self.threshold, "tie_rule": self.tie_rule,
            "fallback_route": self.fallback_route, "allowed_routes": list(self.allowed_routes),
            "downstream_consumer": self.downstream_consumer, "decision": self.decision.value,
            "decision_reason": self.decision_reason, "created_at": self.created_at,
            "model_kind": self.model_kind, "tokenizer": self.tokenizer,
            "receipt": self.receipt, "score_head": self.score_head.to_json(),
            "artifacts": {name: a.to_json() for name, a in self.artifacts.items()},
            "files": [e.to_json() for e in self.files]}
        optional = {"notes": None if self.notes is None else list(self.notes),
                    "documents": None if self.documents is None else dict(self.documents),
                    "score_blend": None if self.score_blend is None
                    else self.score_blend.to_json(),
                    "tokenizer_pins": None if self.tokenizer_pins is None
                    else dict(self.tokenizer_pins),
                    "logit_range": None if self.logit_range is None else dict(self.logit_range),
                    "derived_from": None if self.derived_from is None
                    else self.derived_from.to_json()}
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


def _parse_policy(obj: dict[str, Any], max_length: int, where: str) -> InputPolicy:
    """The input policy; it must carry its segmentation and agree with `max_length`."""
    unknown = sorted(set(obj) - _POLICY_FIELDS)
    if unknown:
        raise _bad(where, f"input_policy.{unknown[0]}", "unknown field")
    if not isinstance(obj.get("segmentation"), dict):
        raise _bad(where, "input_policy.segmentation", "missing: this bundle format scores "
                                                      "every segment of a ticket")
    if obj.get("max_length") != max_length or not 8 <= max_length <= 4096:
        raise _bad(where, "input_policy.max_length", "must equal max_length, in [8, 4096]")
    from intakegate.scoring.encoding import InputPolicy

    try:
        return InputPolicy.from_json(obj)
    except (TypeError, ValueError, KeyError) as exc:
        raise _bad(where, "input_policy", str(exc)) from None


def _parse_files(items: list[Any], where: str) -> tuple[FileEntry, ...]:
    out = []
    for i, entry in enumerate(items):
        if (not isinstance(entry, dict) or set(entry) != {"path", "size", "sha256"}
                or not isinstance(entry["size"], int) or isinstance(entry["size"], bool)
                or not isinstance(entry["sha256"], str)
                or not _DIGEST.fullmatch(entry["sha256"])):
            raise _bad(where, f"files[{i}]", "must be {path, size, sha256}")
        check_relpath(entry["path"])
        out.append(FileEntry(entry["path"], entry["size"], entry["sha256"]))
    if len({e.path for e in out}) != len(out):
        raise _bad(where, "files", "duplicate path")
    return tuple(out)


def parse_manifest_bytes(data: bytes, where: str = MANIFEST) -> Manifest:
    """The manifest from its bytes: size cap, strict UTF-8 JSON, then the schema."""
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
    return Manifest.parse(obj, where)


def write_manifest(bundle_dir: Path, manifest: Manifest) -> str:
    """Recompute the file table, validate, write atomically; returns the manifest sha256."""
    files = tuple(file_table(bundle_dir))
    for ext in {Path(e.path).suffix for e in files}:
        if ext in FORBIDDEN_SUFFIXES:
            raise BundleError("format_not_allowed", f"{ext} files are never shipped")
    body = replace(manifest, files=files).to_json()
    Manifest.parse(body)  # what is written is exactly what every reader will accept
    data = dumps_canonical(body).encode("utf-8")
    atomic_write(bundle_dir / MANIFEST, data)
    return sha256_bytes(data)
