"""Recording re-gate results: the artifact entry, its run and drift files, the manifest update.

The reference run is never rewritten: its scores chose the threshold and are what every other
artifact's drift is measured against. A machine that cannot execute an artifact never erases a
receipt recorded by one that could, and a Core ML receipt from the numpy reference executor never
replaces one from Core ML itself.

Each artifact entry keeps a `gates` map keyed by the runtime that gated it (`onnxruntime-cpu`,
`coreml-macos-all`, `mil-reference-numpy`, ...) with that runtime's decision, reason and time, so
where Core ML and the reference executor both ran, both results stay in the manifest. The entry's
top-level status, reason, gated_with, receipt_run and drift are those of the receipt in force.

A quantized artifact's receipt on one CPU family (`onnxruntime-cpu-<family>`) keeps its own run
file and golden block beside the other families', and the router binds the one of the family it
runs on; the entry's device classes are those of every family that passed, and a family that
holds does not replace another family's passing receipt in force.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from intakegate.bundle import Artifact, ArtifactEntry, GateEntry, Manifest, Status
from intakegate.bundle.paths import run_path
from intakegate.export.artifacts import SPECS
from intakegate.export.drift import drift_summary
from intakegate.export.mil_reference import MIL_REFERENCE
from intakegate.hardware import gate_cpu_family
from intakegate.jsonio import write_json
from intakegate.receipt.gate import Run
from intakegate.receipt.golden import GOLDEN, golden_key, pick_golden_ids, set_golden_block

REFERENCE = Artifact.TORCH_FP32
COREML_MACOS = "coreml-macos"  # gated_with prefix of a receipt computed by Core ML itself
REFERENCE_NOTE = (
    "Gated by intakegate's numpy reference executor of this package's ML Program "
    "(mil-reference-numpy), not by Apple's Core ML runtime. Apple's runtime on the target device "
    "is the final word: fp16 on the Neural Engine or GPU can compute different scores. Re-gate on "
    "macOS with `intakegate gate BUNDLE --artifact {artifact} --record` before relying on it "
    "there.")
MACOS_NOTE = ("Gated by Apple's Core ML runtime on macOS ({runtime}); Core ML picks CPU, GPU or "
              "Neural Engine per device, so another device class can still compute different "
              "scores.")


@dataclass(frozen=True)
class ArtifactGate:
    """One artifact's re-gate: status, reason and the evidence written beside it."""

    artifact: Artifact
    bundle_version: str
    status: Status
    reason: str
    gated_with: str | None = None
    run: Run | None = None
    drift: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    seconds: float = 0.0
    # The pip extra this machine lacks to run the artifact: not checked, which is not held.
    not_checked: str | None = None
    # What the receipt run proves (evidence and composition lines), when it was scored.
    evidence: tuple[str, ...] = ()

    @property
    def eligible(self) -> bool:
        return self.status is Status.ELIGIBLE

    @property
    def run_file(self) -> str:
        """Where this gate's run is written: one file per CPU family for a quantized ONNX
        receipt (`receipt/runs/onnx-int8.arm64.json`), else the artifact's own."""
        return run_path(self.artifact.value, gate_cpu_family(self.gated_with))

    def line(self) -> str:
        """The seed's one-line form, named `<bundle_version>/<artifact>`."""
        decision = (f"not_checked: {self.not_checked}" if self.not_checked
                    else self.status.value)
        return (f"{self.bundle_version}/{self.artifact.value}: decision={decision} "
                f"reason={self.reason}")

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact.value, "bundle_version": self.bundle_version,
                "decision": self.status.value, "reason": self.reason,
                "not_checked": self.not_checked, "gated_with": self.gated_with,
                "max_abs_delta": (self.drift or {}).get("max_abs_delta"),
                "route_flips": [f["id"] for f in (self.drift or {}).get("route_flips", [])],
                "evidence": list(self.evidence), "seconds": round(self.seconds, 2)}


def apply_gate(entry: ArtifactEntry, gate: ArtifactGate) -> ArtifactEntry:
    """The entry with the fields a re-gate sets (the receipt in force)."""
    spec = SPECS[gate.artifact]
    if gate.status is Status.PENDING_REGATE:
        return replace(entry, status=gate.status, reason=gate.reason, receipt_run=None,
                       gated_with=None, drift=None, note=None)
    changes: dict[str, Any] = {"status": gate.status, "reason": gate.reason,
                               "gated_with": gate.gated_with}
    note = gate_note(gate)
    if note:
        changes["note"] = note
    if gate.run is not None and gate.details and gate.details.get("device_class"):
        here = str(gate.details["device_class"])
        # Every family that passed keeps its machine type (x86_64 and arm64 receipts side by
        # side); another runtime's receipt says where it holds by itself.
        families = gate_cpu_family(gate.gated_with) is not None and gate.eligible
        kept = set(entry.device_classes or ()) if families else set()
        changes["device_classes"] = tuple(sorted(kept | {here}))
    if gate.run is not None and gate.artifact is not REFERENCE:
        changes["receipt_run"] = gate.run_file
    if gate.drift is not None:
        changes["drift"] = MappingProxyType(drift_summary(gate.drift, spec.drift_report))
    return replace(entry, **changes)


def gate_note(gate: ArtifactGate) -> str | None:
    """What a reader must know about how a Core ML receipt was computed."""
    runtime = gate.gated_with or ""
    if runtime == MIL_REFERENCE:
        return REFERENCE_NOTE.format(artifact=gate.artifact.value)
    if runtime.startswith(COREML_MACOS):
        return MACOS_NOTE.format(runtime=runtime)
    return None


def gated_by_core_ml(entry: ArtifactEntry) -> bool:
    """The entry's receipt in force was computed by Core ML itself."""
    return bool(entry.receipt_run) and (entry.gated_with or "").startswith(COREML_MACOS)


def keeps_earlier_receipt(entry: ArtifactEntry, gate: ArtifactGate) -> bool:
    """A machine that cannot run an artifact does not erase a receipt from one that did, the
    reference executor does not replace a receipt from Core ML (it is recorded beside it), and a
    CPU family that holds does not replace another family's passing receipt (the router serves
    each family by its own entry)."""
    if gate.status is Status.PENDING_REGATE:
        return bool(entry.receipt_run)
    if (gate_cpu_family(gate.gated_with) is not None and not gate.eligible and entry.eligible
            and entry.gated_with != gate.gated_with):
        return True
    return gate.gated_with == MIL_REFERENCE and gated_by_core_ml(entry)


def gate_record(gate: ArtifactGate, when: str, in_force: bool) -> GateEntry:
    """One runtime's result in the entry's `gates` map."""
    run = (gate.run_file
           if in_force and gate.run is not None and gate.artifact is not REFERENCE else None)
    if gate.drift is None:
        return GateEntry(gate.status.value, gate.reason, when, run)
    return GateEntry(gate.status.value, gate.reason, when, run, gate.drift.get("max_abs_delta"),
                     tuple(f["id"] for f in gate.drift.get("route_flips", [])))


def write_gate_files(bundle_dir: Path, gates: Sequence[ArtifactGate],
                     entries: Mapping[str, ArtifactEntry] | None = None) -> list[str]:
    """Write run and drift files for the gates that produced them; return the paths written.

    The reference's re-run is kept in its drift report, not over its training run. With the
    manifest's artifact `entries`, a gate that does not replace the receipt in force (the
    reference executor beside a Core ML receipt) writes nothing.
    """
    written = []
    for gate in gates:
        spec = SPECS[gate.artifact]
        entry = (entries or {}).get(gate.artifact.value)
        if entry is not None and keeps_earlier_receipt(entry, gate):
            continue
        if gate.run is not None and gate.artifact is not REFERENCE:
            (bundle_dir / gate.run_file).parent.mkdir(parents=True, exist_ok=True)
            write_json(bundle_dir / gate.run_file, gate.run.to_json())
            written.append(gate.run_file)
        if gate.drift is not None:
            (bundle_dir / spec.drift_report).parent.mkdir(parents=True, exist_ok=True)
            write_json(bundle_dir / spec.drift_report, gate.drift)
            written.append(spec.drift_report)
    return written


def write_golden_rows(bundle_dir: Path, manifest: Manifest, gates: Sequence[ArtifactGate],
                      texts: Mapping[str, str]) -> list[str]:
    """Write each re-gated artifact's own golden rows: picked by the one rule
    (`pick_golden_ids`) from its own receipt scores, texts from the bundle's fixtures.

    Held artifacts get theirs too: the router refuses them before any self-test, and the
    benchmark's measurement-only mode (which times held artifacts) still runs the self-test."""
    written = []
    for gate in gates:
        if gate.run is None or gate.artifact is REFERENCE:
            continue
        if gate.gated_with == MIL_REFERENCE:
            continue  # golden rows are the artifact's own runtime's scores, not a reference's
        entry = manifest.artifacts[gate.artifact.value]
        if gate_cpu_family(gate.gated_with) and keeps_earlier_receipt(entry, gate):
            continue  # a family that held keeps no run, so no golden rows of that run either
        own = {r.fixture_id: r.score for r in gate.run.rows if r.score is not None}
        picked = pick_golden_ids(own, texts)
        if not picked:
            continue
        rows = [{"fixture_id": fid, "text": texts[fid], "score": own[fid]} for fid in picked]
        set_golden_block(bundle_dir, golden_key(gate.artifact.value, gate.gated_with),
                         str(entry.model_sha256), rows)
        written.append(GOLDEN)
    return written


def updated_manifest(manifest: Manifest, gates: Sequence[ArtifactGate]) -> Manifest:
    """The manifest with each gated artifact's entry and drift document updated."""
    artifacts = dict(manifest.artifacts)
    documents = dict(manifest.documents or {})
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for gate in gates:
        entry = artifacts.get(gate.artifact.value)
        if entry is None:
            continue
        kept = keeps_earlier_receipt(entry, gate)
        if gate.status is not Status.PENDING_REGATE and gate.gated_with:
            record = gate_record(gate, when, not kept)
            others = {runtime: (replace(r, receipt_run=None)  # its run file was just replaced
                                if record.receipt_run and r.receipt_run == record.receipt_run
                                else r)
                      for runtime, r in entry.gates.items()}
            entry = replace(entry, gates=MappingProxyType({**others, gate.gated_with: record}))
        if not kept:
            entry = apply_gate(entry, gate)
            if gate.drift is not None:
                path = SPECS[gate.artifact].drift_report
                documents[Path(path).name] = path
        artifacts[gate.artifact.value] = entry
    return replace(manifest, artifacts=MappingProxyType(artifacts),
                   documents=MappingProxyType(documents) if documents else manifest.documents)
