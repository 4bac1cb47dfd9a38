"""`intakegate export`: verified bundle -> staging copy -> artifacts -> re-gate -> swap in.

The live bundle is never written in place. Everything happens in a staging copy beside it:
artifacts are exported from the verified reference weights, listed with their hashes, scored
over the frozen receipt by their own backends, and only then does the staging copy replace the
bundle. Any failure removes the staging copy and leaves the bundle exactly as it was.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from intakegate.bundle import (
    Artifact,
    ArtifactEntry,
    BundleError,
    Manifest,
    Status,
    VerifiedBundle,
    cpu_family_exactness_refusal,
    tree_sha256,
    verify_bundle,
)
from intakegate.bundle.paths import GOLDEN, RUNS_DIR
from intakegate.export.artifacts import (
    COREML_ARTIFACTS,
    EXPORTABLE,
    ONNX_ARTIFACTS,
    SPECS,
    ArtifactSpec,
    tool_versions,
)
from intakegate.export.commit import (
    commit_manifest,
    manifest_sha,
    refresh_active_pointer,
    swap_into_place,
)
from intakegate.export.cpu import int8_candidates, vnni_int8_candidates
from intakegate.export.materialize import materialize
from intakegate.export.recipe_search import choose_recipe
from intakegate.export.regate import (
    Inventory,
    ScoredGraph,
    load_inventory,
    regate_artifact,
    score_inventory,
    scoring_inputs,
)
from intakegate.export.results import (
    REFERENCE,
    ArtifactGate,
    updated_manifest,
    write_gate_files,
    write_golden_rows,
)
from intakegate.hardware import CpuFamily, detect_cpu_family
from intakegate.parallel import cpu_workers
from intakegate.receipt.gate import GateResult, release_decision
from intakegate.receipt.golden import drop_golden_blocks
from intakegate.scoring.ticket_score import ScoreSpec

log = logging.getLogger(__name__)
NOT_GATED = "not_gated_yet"
ONNX_TOOLS = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime")
COREML_TOOLS = ("torch", "transformers", "coremltools")


@dataclass(frozen=True)
class ExportResult:
    """What the export wrote and how each artifact re-gated."""

    bundle_dir: Path
    gates: tuple[ArtifactGate, ...]
    manifest_sha256: str
    seconds: float


def check_exportable(bundle: VerifiedBundle, measurement_only: bool = False) -> None:
    """Only a model whose reference artifact passed its receipt is exported, unless the export
    is for measurement only: then every artifact is re-gated and recorded held
    (`model_held`, `export.regate`), so the bench can time what the model would cost."""
    m = bundle.manifest
    ref = m.artifacts.get(REFERENCE.value)
    if ref is None:
        raise BundleError("artifact_missing", "the bundle has no torch-fp32 reference artifact",
                          str(bundle.root))
    held = not ref.eligible or not m.eligible
    if held and not measurement_only:
        raise BundleError("artifact_held", f"torch-fp32 is {ref.status.value} "
                                           f"({ref.reason or m.decision_reason}); a held "
                                           "model is not exported (--measurement-only exports "
                                           "it held, for `intakegate bench`)", str(bundle.root))
    if held:
        log.warning("%s is held (%s): exporting for measurement only; every artifact stays "
                    "held", bundle.bundle_version, ref.reason or m.decision_reason)


def export_bundle(bundle_dir: Path, artifacts: Sequence[Artifact] = EXPORTABLE,
                  cpu_family: CpuFamily | None = None, measurement_only: bool = False
                  ) -> ExportResult:
    """Export and re-gate `artifacts` into the bundle; the bundle changes only on success.
    `measurement_only` admits a held model (`check_exportable`)."""
    started = time.monotonic()
    bundle_dir = Path(bundle_dir)
    verified = verify_bundle(bundle_dir)
    check_exportable(verified, measurement_only)
    unknown = [a for a in artifacts if a not in EXPORTABLE]
    if unknown:
        raise ValueError(f"not exportable: {[a.value for a in unknown]}")
    staging = bundle_dir.with_name(f".export-{bundle_dir.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        log.info("staging copy of %s", bundle_dir)
        shutil.copytree(bundle_dir, staging)
        staged = verify_bundle(staging)
        if staged.manifest_sha256 != verified.manifest_sha256:
            raise BundleError("bundle_changed", "the bundle changed while it was copied",
                              str(bundle_dir))
        exported, scored = _export_into(staging, staged, list(artifacts), cpu_family)
        inventory = load_inventory(exported)
        gates = []
        for artifact in artifacts:
            gate = regate_artifact(exported, artifact, inventory, scored=scored)
            log.info("%s", gate.line())
            gates.append(gate)
        written = write_gate_files(staging, gates)
        written += sorted(set(write_golden_rows(staging, exported.manifest, gates,
                                                inventory.texts)))
        commit_manifest(staging, updated_manifest(exported.manifest, gates), exported,
                        written)
        verify_bundle(staging)
        swap_into_place(staging, bundle_dir, verified.manifest_sha256)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    new_sha = manifest_sha(bundle_dir)
    refresh_active_pointer(bundle_dir, verified.manifest_sha256, new_sha)
    return ExportResult(bundle_dir, tuple(gates), new_sha, time.monotonic() - started)


def _export_into(staging: Path, staged: VerifiedBundle, artifacts: list[Artifact],
                 cpu_family: CpuFamily | None
                 ) -> tuple[VerifiedBundle, dict[str, ScoredGraph]]:
    """Write the artifacts into the staging copy and list them (status pending_regate);
    with them, the receipt runs the int8 recipe search made, by the sha256 of the graph."""
    m = staged.manifest
    touched = _clear_previous(staging, artifacts)
    entries: dict[str, ArtifactEntry] = {}
    with tempfile.TemporaryDirectory(prefix="intakegate-export-") as work:
        work_dir = Path(work)
        model_dir = materialize(staged, m.artifacts[REFERENCE.value].path,
                                work_dir / "reference")
        settings, scored = _export_onnx(staging, staged, work_dir, model_dir, artifacts,
                                        cpu_family)
        settings.update(_export_coreml(staging, model_dir, m, artifacts))
    source_sha = m.artifacts[REFERENCE.value].sha256
    for artifact in artifacts:
        spec = SPECS[artifact]
        entries[artifact.value] = _entry(staging, spec, settings[artifact], source_sha)
    dropped = {SPECS[a].drift_report for a in artifacts}
    manifest = replace(m, artifacts={**m.artifacts, **entries},
                       documents=None if m.documents is None else
                       {k: v for k, v in m.documents.items() if v not in dropped})
    commit_manifest(staging, manifest, staged, touched)
    return verify_bundle(staging), scored


def _clear_previous(staging: Path, artifacts: list[Artifact]) -> list[str]:
    """Remove an earlier export's files for the re-exported artifacts (per-family runs and
    golden blocks included: they belong to the old model); return the paths."""
    touched = []
    for artifact in artifacts:
        spec = SPECS[artifact]
        family_runs = sorted(p.relative_to(staging).as_posix()
                             for p in (staging / RUNS_DIR).glob(f"{artifact.value}.*.json"))
        if drop_golden_blocks(staging, artifact.value):
            touched.append(GOLDEN)
        for rel in (spec.path, spec.receipt_run, spec.drift_report, *family_runs):
            target = staging / rel
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            touched.append(rel)
    return touched


def _export_onnx(staging: Path, staged: VerifiedBundle, work_dir: Path, model_dir: Path,
                 artifacts: list[Artifact], cpu_family: CpuFamily | None
                 ) -> tuple[dict[Artifact, dict[str, Any]], dict[str, ScoredGraph]]:
    from intakegate.export.onnx_export import export_onnx_fp32, quantize_onnx_int8

    m = staged.manifest
    out: dict[Artifact, dict[str, Any]] = {}
    if not ONNX_ARTIFACTS & set(artifacts):
        return out, {}
    fp32 = work_dir / "onnx-fp32.onnx"
    log.info("exporting onnx-fp32 (%s)", m.model_kind)
    t = time.monotonic()
    fp32_settings = export_onnx_fp32(model_dir, m.model_kind, fp32)
    fp32_settings["export_seconds"] = round(time.monotonic() - t, 2)
    if Artifact.ONNX_FP32 in artifacts:
        target = staging / SPECS[Artifact.ONNX_FP32].path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fp32, target)
        out[Artifact.ONNX_FP32] = fp32_settings
    family = cpu_family or detect_cpu_family()
    int8 = [(artifact, candidates_for) for artifact, candidates_for in (
        (Artifact.ONNX_INT8, int8_candidates), (Artifact.ONNX_INT8_VNNI, vnni_int8_candidates))
        if artifact in artifacts]
    receipt = _CandidateReceipt.load(staged) if int8 else None
    for artifact, candidates_for in int8:
        log.info("quantizing %s for %s", artifact.value, family.value)
        t = time.monotonic()
        gate, reference = (None, None) if receipt is None else receipt.gate_for(artifact)
        settings, outcomes = choose_recipe(
            candidates_for(family), staging / SPECS[artifact].path, work_dir,
            lambda chosen, path: quantize_onnx_int8(fp32, path, chosen, model_dir),
            gate, reference)
        settings["recipe_search"] = [o.to_json() for o in outcomes]
        settings["export_seconds"] = round(time.monotonic() - t, 2)
        out[artifact] = settings
    return out, {} if receipt is None else dict(receipt.scored)


@dataclass(frozen=True)
class _CandidateReceipt:
    """The staged bundle's receipt, read once per export, that `recipe_search` gates each
    candidate graph on, and the reference model's own gate."""

    bundle: VerifiedBundle
    inventory: Inventory
    tokenizer: Any
    spec: ScoreSpec
    reference: GateResult
    scored: dict[str, ScoredGraph] = field(default_factory=dict)  # by the graph's sha256

    @staticmethod
    def load(staged: VerifiedBundle) -> _CandidateReceipt | None:
        """None where no receipt can be scored (the bundle carries no fixtures)."""
        inventory = load_inventory(staged)
        if inventory.hold_reason:
            return None
        tokenizer, spec = scoring_inputs(staged)
        return _CandidateReceipt(staged, inventory, tokenizer, spec,
                                 release_decision(inventory.spec, inventory.reference))

    def gate_for(self, artifact: Artifact
                 ) -> tuple[Callable[[Path], GateResult] | None, GateResult | None]:
        """How a candidate graph of `artifact` is gated, and the reference gate; (None, None)
        on a CPU family where the artifact's kernels are not exact."""
        from intakegate.export.backends import onnx_backend

        if cpu_family_exactness_refusal(artifact.value, detect_cpu_family().value):
            return None, None

        def gate(path: Path) -> GateResult:
            graph = path.read_bytes()
            with onnx_backend(graph, quantized=True, workers=cpu_workers()) as backend:
                run = score_inventory(self.bundle, self.inventory, backend, self.tokenizer,
                                      self.spec, f"{artifact.value} candidate {path.stem}")
            digest = hashlib.sha256(graph).hexdigest()
            self.scored[digest] = ScoredGraph(digest, backend.gated_with, run)
            return release_decision(self.inventory.spec, run)

        return gate, self.reference


def _export_coreml(staging: Path, model_dir: Path, m: Manifest,
                   artifacts: list[Artifact]) -> dict[Artifact, dict[str, Any]]:
    from intakegate.export.coreml_export import convert_coreml

    wanted = COREML_ARTIFACTS & set(artifacts)
    if not wanted:
        return {}
    log.info("converting Core ML (%s)", ", ".join(sorted(a.value for a in wanted)))
    fp16 = (staging / SPECS[Artifact.COREML_FP16].path
            if Artifact.COREML_FP16 in wanted else None)
    int8 = (staging / SPECS[Artifact.COREML_INT8].path
            if Artifact.COREML_INT8 in wanted else None)
    settings = convert_coreml(model_dir, m.model_kind, m.max_length, fp16, int8)
    out = {}
    if fp16 is not None:
        out[Artifact.COREML_FP16] = settings["fp16"]
    if int8 is not None:
        out[Artifact.COREML_INT8] = settings["int8"]
    return out


def _entry(staging: Path, spec: ArtifactSpec, settings: dict[str, Any], source_sha: str
           ) -> ArtifactEntry:
    """The manifest entry of a freshly exported, not yet gated artifact."""
    digest, size = tree_sha256(staging, spec.path)
    coreml = spec.artifact in COREML_ARTIFACTS
    return ArtifactEntry(
        spec.format, spec.precision, spec.path, digest, Status.PENDING_REGATE, reason=NOT_GATED,
        model_sha256=digest, size_bytes=size,
        tool_versions=tool_versions(*(COREML_TOOLS if coreml else ONNX_TOOLS)),
        export_settings={**settings, "source_artifact": REFERENCE.value,
                         "source_sha256": source_sha})
