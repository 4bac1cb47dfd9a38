"""Recording re-gate results: the artifact entry, its run and drift files, the manifest update.

The reference run is never rewritten: its scores chose the threshold and are what every other
artifact's drift is measured against. A machine that cannot execute an artifact never erases a
receipt recorded by one that could.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.bundle import Artifact, Status
from intakegate.export.artifacts import SPECS
from intakegate.export.drift import drift_summary
from intakegate.gate import Run
from intakegate.golden import GOLDEN, read_golden, set_golden_block
from intakegate.jsonio import write_json

REFERENCE = Artifact.TORCH_FP32


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

    @property
    def eligible(self) -> bool:
        return self.status is Status.ELIGIBLE

    def line(self) -> str:
        """The seed's one-line form, named `<bundle_version>/<artifact>`."""
        return (f"{self.bundle_version}/{self.artifact.value}: decision={self.status.value} "
                f"reason={self.reason}")


def entry_update(gate: ArtifactGate) -> dict[str, Any]:
    """The manifest fields a re-gate sets on the artifact's entry."""
    spec = SPECS[gate.artifact]
    if gate.status is Status.PENDING_REGATE:
        return {"status": gate.status.value, "reason": gate.reason, "receipt_run": None,
                "gated_with": None, "drift": None}
    out: dict[str, Any] = {"status": gate.status.value, "reason": gate.reason,
                           "gated_with": gate.gated_with}
    if gate.run is not None and gate.details and gate.details.get("device_class"):
        out["device_classes"] = [gate.details["device_class"]]
    if gate.run is not None and gate.artifact is not REFERENCE:
        out["receipt_run"] = spec.receipt_run
    if gate.drift is not None:
        out["drift"] = drift_summary(gate.drift, spec.drift_report)
    return out


def keeps_earlier_receipt(entry: dict[str, Any], gate: ArtifactGate) -> bool:
    """A machine that cannot run an artifact does not erase a receipt from one that did."""
    return gate.status is Status.PENDING_REGATE and bool(entry.get("receipt_run"))


def write_gate_files(bundle_dir: Path, gates: Sequence[ArtifactGate]) -> list[str]:
    """Write run and drift files for the gates that produced them; return the paths written.

    The reference's re-run is kept in its drift report, not over its training run.
    """
    written = []
    for gate in gates:
        spec = SPECS[gate.artifact]
        if gate.run is not None and gate.artifact is not REFERENCE:
            (bundle_dir / spec.receipt_run).parent.mkdir(parents=True, exist_ok=True)
            write_json(bundle_dir / spec.receipt_run, gate.run.to_json())
            written.append(spec.receipt_run)
        if gate.drift is not None:
            (bundle_dir / spec.drift_report).parent.mkdir(parents=True, exist_ok=True)
            write_json(bundle_dir / spec.drift_report, gate.drift)
            written.append(spec.drift_report)
    return written


def write_golden_rows(bundle_dir: Path, manifest: dict[str, Any],
                      gates: Sequence[ArtifactGate]) -> list[str]:
    """Add each re-gated artifact's own golden rows (texts from the reference block)."""
    doc = read_golden(bundle_dir)
    reference = doc.get("artifacts", {}).get(REFERENCE.value)
    if not reference:
        return []
    written = []
    for gate in gates:
        if gate.run is None or gate.artifact is REFERENCE or not gate.eligible:
            continue
        own = {r.fixture_id: r.score for r in gate.run.rows}
        rows = [{"fixture_id": r["fixture_id"], "text": r["text"], "score": own[r["fixture_id"]]}
                for r in reference["rows"] if own.get(r["fixture_id"]) is not None]
        entry = manifest["artifacts"][gate.artifact.value]
        set_golden_block(bundle_dir, gate.artifact.value, entry["model_sha256"], rows)
        written.append(GOLDEN)
    return written


def updated_manifest(manifest: dict[str, Any], gates: Sequence[ArtifactGate]) -> dict[str, Any]:
    """A copy of the manifest with each gated artifact's entry and drift document updated."""
    out = dict(manifest)
    artifacts = {k: dict(v) for k, v in manifest["artifacts"].items()}
    documents = dict(manifest.get("documents", {}))
    for gate in gates:
        entry = artifacts.get(gate.artifact.value)
        if entry is None or keeps_earlier_receipt(entry, gate):
            continue
        entry.update(entry_update(gate))
        if gate.drift is not None:
            path = SPECS[gate.artifact].drift_report
            documents[Path(path).name] = path
    out["artifacts"] = artifacts
    if documents:
        out["documents"] = documents
    return out
