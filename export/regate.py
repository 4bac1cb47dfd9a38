"""Re-gate an artifact: score the bundle's frozen validation inventory with the artifact's own
backend, through the runtime's scoring path, and let the one gate decide.

The run carries the bundle's identity and pinned threshold, so the receipt is the same exact
receipt the reference model passed. An artifact this machine cannot execute is never marked
eligible: it stays `pending_regate` with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.bundle import (
    MANIFEST,
    SIGNATURE,
    Artifact,
    BundleError,
    Status,
    VerifiedBundle,
    cpu_family_exactness_refusal,
    resolve_bundle,
    verify_bundle,
)
from intakegate.bundle.paths import FIXTURES
from intakegate.export.artifacts import parse_artifacts
from intakegate.export.backends import BackendUnavailable, GateBackend, gate_backend
from intakegate.export.drift import MARGIN_TOLERANCE, drift_report
from intakegate.export.results import (
    REFERENCE,
    ArtifactGate,
    updated_manifest,
    write_gate_files,
    write_golden_rows,
)
from intakegate.hardware import cpu_gate_key, detect_cpu_family
from intakegate.jsonio import loads_strict
from intakegate.receipt.fixtures import fixture_texts
from intakegate.receipt.gate import (
    IDENTITY_FIELDS,
    GateRow,
    ReceiptSpec,
    Run,
    release_decision,
    run_from_json,
    spec_from_json,
)
from intakegate.scoring.encoding import token_id_bound, tokenizer_matches_policy
from intakegate.scoring.lexical import blend_from_entry
from intakegate.scoring.ticket_score import ScoreSpec, progress_log, score_texts
from intakegate.vocab import GateDecision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inventory:
    """The frozen receipt, its reference rows and texts, or the reason they cannot be scored."""

    spec: ReceiptSpec
    reference: Run
    texts: dict[str, str]
    hold_reason: str | None = None

    @property
    def reference_scores(self) -> dict[str, float]:
        return {r.fixture_id: r.score for r in self.reference.rows if r.score is not None}


@dataclass(frozen=True)
class ScoredGraph:
    """A receipt run of exact bytes: their sha256, the runtime that scored them and the run.

    The export's int8 recipe search scores each candidate graph on the receipt; the kept one's
    run is then the artifact's re-gate run (`regate_artifact(scored=...)`), not a second
    scoring of the same bytes on the same runtime."""

    sha256: str
    gated_with: str
    run: Run


def _read_json(bundle: VerifiedBundle, rel: str) -> Any:
    return loads_strict(bundle.read(rel).decode("utf-8"), path=rel)


def load_inventory(bundle: VerifiedBundle) -> Inventory:
    """The receipt spec, the reference run (slice and gold per fixture) and the fixture texts,
    all from the bundle itself (receipt/fixtures.jsonl): no dataset is opened."""
    m = bundle.manifest
    spec = spec_from_json(_read_json(bundle, m.receipt), Path(m.receipt))
    ref_entry = m.artifacts.get(REFERENCE.value)
    if ref_entry is None or not ref_entry.receipt_run:
        raise BundleError("manifest_invalid", "the bundle has no torch-fp32 receipt run to "
                                              "compare with", MANIFEST)
    reference = run_from_json(_read_json(bundle, ref_entry.receipt_run),
                              Path(ref_entry.receipt_run))
    if FIXTURES not in m.listed:
        return Inventory(spec, reference, {}, f"fixtures_absent:{FIXTURES}")
    fixtures, problem = fixture_texts(spec.fixture_ids, spec.fixture_sha256, bundle.read)
    if problem:
        return Inventory(spec, reference, {}, problem)
    mismatched = sorted(r.fixture_id for r in reference.rows if r.fixture_id in fixtures
                        and (fixtures[r.fixture_id].gold, fixtures[r.fixture_id].slice)
                        != (r.gold, r.slice))
    if mismatched:
        return Inventory(spec, reference, {}, f"fixture_mismatch:{','.join(mismatched)}")
    return Inventory(spec, reference, {fid: fixtures[fid].text for fid in spec.fixture_ids})


def _hold(artifact: Artifact, bundle: VerifiedBundle, reason: str, **kw: Any) -> ArtifactGate:
    return ArtifactGate(artifact, bundle.bundle_version, Status.HOLD, reason, **kw)


def scoring_inputs(bundle: VerifiedBundle, tokenizer_json: str | None = None
                   ) -> tuple[Any, ScoreSpec]:
    """The tokenizer and score spec a re-gate scores the bundle's fixtures with (the studies in
    lab/ score the same way)."""
    from tokenizers import Tokenizer

    m = bundle.manifest
    if tokenizer_json is None:
        tokenizer_json = bundle.read(m.tokenizer).decode("utf-8")
    tokenizer = Tokenizer.from_str(tokenizer_json)
    return tokenizer, ScoreSpec(m.input_policy, m.score_head.positive, len(m.score_head.labels),
                                token_id_bound(tokenizer), None,
                                blend_from_entry(m.score_blend, bundle.read))


def regate_artifact(bundle: VerifiedBundle, artifact: Artifact, inventory: Inventory,
                    tolerance: float = MARGIN_TOLERANCE, workers: int | None = None,
                    scored: Mapping[str, ScoredGraph] | None = None) -> ArtifactGate:
    """Score the frozen inventory with the artifact's backend and gate the run.

    `workers`: tickets scored at once (default: one per core where the artifact's runtime
    allows it, `gate_backend`); no score depends on it. `scored`: runs already made of exact
    bytes, by sha256 (`reusable_run` says when one stands for this artifact's run)."""
    started = time.monotonic()
    if inventory.hold_reason:
        return _hold(artifact, bundle, inventory.hold_reason)
    m = bundle.manifest
    policy = m.input_policy
    tokenizer_json = bundle.read(m.tokenizer).decode("utf-8")
    mismatch = tokenizer_matches_policy(tokenizer_json, policy)
    if mismatch:
        log.error("%s: %s", m.tokenizer, mismatch)
        return _hold(artifact, bundle, "tokenizer_policy_mismatch")
    tokenizer, spec = scoring_inputs(bundle, tokenizer_json)
    family = detect_cpu_family().value
    inexact = cpu_family_exactness_refusal(artifact.value, family)
    if inexact:  # its receipt would measure kernels that saturate: never gated here
        log.warning("%s/%s: %s", bundle.bundle_version, artifact.value, inexact)
        return _hold(artifact, bundle, f"cpu_family_inexact:{family}",
                     gated_with=cpu_gate_key(family))
    try:
        backend = gate_backend(artifact, bundle, workers)
    except BackendUnavailable as exc:
        log.warning("%s/%s: %s", bundle.bundle_version, artifact.value, exc)
        return ArtifactGate(artifact, bundle.bundle_version, Status.PENDING_REGATE, exc.reason,
                            not_checked=exc.extra)
    except BundleError as exc:
        return _hold(artifact, bundle, exc.code + (f":{exc.path}" if exc.path else ""))
    except Exception as exc:  # noqa: BLE001 - an artifact its runtime cannot load is held
        log.exception("%s/%s: the backend failed to load", bundle.bundle_version, artifact.value)
        return _hold(artifact, bundle, f"backend_error:{type(exc).__name__}")
    with backend:
        try:
            reused = reusable_run(bundle, artifact, inventory, backend.gated_with,
                                  scored or {})
            run = reused or score_inventory(bundle, inventory, backend, tokenizer, spec,
                                            artifact.value)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot score is held
            log.exception("%s/%s: scoring failed", bundle.bundle_version, artifact.value)
            return _hold(artifact, bundle, f"backend_error:{type(exc).__name__}",
                         gated_with=backend.gated_with)
    rows = run.rows
    result = release_decision(inventory.spec, run)
    drift = drift_report(artifact.value, rows, inventory.reference_scores, bundle.threshold,
                         inventory.spec.required_slices, tolerance)
    drift["gated_with"] = {"runtime": backend.gated_with, **backend.details}
    drift["gate"] = result.to_json()
    drift["scored_by"] = "recipe_search" if reused else "regate"
    status = Status.ELIGIBLE if result.decision is GateDecision.ELIGIBLE_FOR_SHADOW else Status.HOLD
    reason = result.reason
    if artifact is not REFERENCE and not m.eligible:
        # An artifact of a held model is held whatever its own run says (that stays in the
        # drift report): quantization noise must not make a held model shippable.
        status, reason = Status.HOLD, f"model_held:{m.decision_reason}"
    return ArtifactGate(artifact, bundle.bundle_version, status, reason,
                        backend.gated_with, run, drift, backend.details,
                        time.monotonic() - started, evidence=result.summary_lines())


def score_inventory(bundle: VerifiedBundle, inventory: Inventory, backend: GateBackend,
                    tokenizer: Any, spec: ScoreSpec, label: str) -> Run:
    """The receipt run of `backend`: every fixture the reference run scored, through the one
    scoring path, under the bundle's identity and pinned threshold (the gate decides on it)."""
    ref_rows = {r.fixture_id: r for r in inventory.reference.rows}
    scorable = [fid for fid in inventory.spec.fixture_ids
                if fid in ref_rows and fid in inventory.texts]
    log.info("%s/%s: scoring %d fixtures with %s on %d thread(s)", bundle.bundle_version,
             label, len(scorable), backend.gated_with, backend.workers)
    scored = score_texts(backend, tokenizer, [inventory.texts[f] for f in scorable], spec,
                         progress_log(f"{bundle.bundle_version}/{label}"),
                         workers=backend.workers)
    rows = tuple(GateRow(fid, ref_rows[fid].slice, ref_rows[fid].gold, _finite(s.score))
                 for fid, s in zip(scorable, scored))
    identity = {k: str(getattr(bundle.manifest, k)) for k in IDENTITY_FIELDS}
    return Run(bundle.bundle_version, identity, bundle.threshold, rows)


def reusable_run(bundle: VerifiedBundle, artifact: Artifact, inventory: Inventory,
                 gated_with: str, scored: Mapping[str, ScoredGraph]) -> Run | None:
    """An earlier run that is this artifact's re-gate run to the bit, or None: made of the
    bytes the (verified) manifest lists for the artifact, on the runtime that would score them
    now, under the bundle's identity and pinned threshold, over the same fixtures."""
    entry = bundle.manifest.artifacts.get(artifact.value)
    prior = scored.get(entry.sha256) if entry is not None else None
    if prior is None or prior.gated_with != gated_with:
        return None
    run = prior.run
    identity = {k: str(getattr(bundle.manifest, k)) for k in IDENTITY_FIELDS}
    fixtures = [r.fixture_id for r in inventory.reference.rows
                if r.fixture_id in inventory.texts]
    if (run.identity != identity or run.threshold != bundle.threshold
            or sorted(r.fixture_id for r in run.rows) != sorted(fixtures)):
        return None
    log.info("%s/%s: the recipe search scored these bytes (%s) on %s: its run is the re-gate "
             "run", bundle.bundle_version, artifact.value, prior.sha256[:12], gated_with)
    return Run(bundle.bundle_version, identity, bundle.threshold, run.rows)


def _finite(score: float | None) -> float | None:
    """Non-finite scores are recorded as null (the gate holds them as invalid_score)."""
    return score if score is not None and math.isfinite(score) else None


@dataclass(frozen=True)
class GateReport:
    """What `intakegate gate` found, and what it wrote (nothing unless asked to record)."""

    bundle_dir: Path
    manifest_sha256: str
    gates: tuple[ArtifactGate, ...]
    recorded_sha256: str | None = None  # the new manifest's digest when --record wrote one

    @property
    def exit_code(self) -> int:
        """0 all eligible, 1 any held, 5 none held but some not checked (a missing extra)."""
        from intakegate.cli.exits import ExitCode

        if not self.gates or any(not g.eligible and not g.not_checked for g in self.gates):
            return ExitCode.HELD
        return ExitCode.NOT_CHECKED if any(g.not_checked for g in self.gates) else ExitCode.OK


def check_bundle(bundle_dir: Path, artifacts: Sequence[Artifact] | None = None,
                 workers: int | None = None) -> tuple[VerifiedBundle, list[ArtifactGate]]:
    """Verify and re-gate the named (default: every listed) artifacts; writes nothing.

    A bundle that fails verification is refused before anything is scored.
    """
    verified = verify_bundle(bundle_dir)
    if artifacts is None:
        artifacts = [a for a in Artifact if a.value in verified.manifest.artifacts]
    inventory = load_inventory(verified)
    gates = []
    for artifact in artifacts:
        if artifact.value not in verified.manifest.artifacts:
            gates.append(_hold(artifact, verified, "not_exported"))
            continue
        gates.append(regate_artifact(verified, artifact, inventory, workers=workers))
    return verified, gates


def regate_bundle(bundle_dir: Path, artifacts: Sequence[Artifact] | None = None, *,
                  record: bool = False) -> list[ArtifactGate]:
    """Re-gate; with `record`, write the results into a new manifest (`record_gates`)."""
    verified, gates = check_bundle(bundle_dir, artifacts)
    if record:
        record_gates(bundle_dir, verified, gates)
    return gates


def record_gates(bundle_dir: Path, verified: VerifiedBundle, gates: Sequence[ArtifactGate]
                 ) -> str:
    """Write run, drift and golden files and a new manifest; returns its sha256.

    The dataset's ACTIVE pointer is not touched: it keeps pinning the manifest that was
    activated (a consumer pinning that digest sees no change) until `bundles activate`.
    """
    from intakegate.export.commit import commit_manifest

    recorded = [g for g in gates if g.reason != "not_exported"]
    written = write_gate_files(bundle_dir, recorded, verified.manifest.artifacts)
    texts = load_inventory(verified).texts
    written += sorted(set(write_golden_rows(bundle_dir, verified.manifest, recorded, texts)))
    return commit_manifest(bundle_dir, updated_manifest(verified.manifest, recorded),
                           verified, written)


def gate_bundle_command(bundle: Path, artifacts: list[str], bundles_root: Path,
                        record: bool = False, as_json: bool = False,
                        workers: int | None = None) -> int:
    """`intakegate gate BUNDLE [--artifact A] [--record] [--json]`: one line per artifact.

    Read-only unless `record`; exit 0 all eligible, 1 any held, 5 some not checked.
    """
    import json

    import typer

    bundle_dir = resolve_bundle(bundle, bundles_root).path
    verified, gates = check_bundle(bundle_dir, parse_artifacts(artifacts) if artifacts else None,
                                   workers)
    recorded = record_gates(bundle_dir, verified, gates) if record else None
    report = GateReport(bundle_dir, verified.manifest_sha256, tuple(gates), recorded)
    notes = []
    if recorded is not None:
        notes.append(f"recorded: new manifest {recorded[:12]} (was "
                     f"{verified.manifest_sha256[:12]}); ACTIVE still pins the old one: run "
                     f"`intakegate bundles activate {verified.manifest.dataset} "
                     f"{verified.bundle_version}` to serve it")
        if (bundle_dir / SIGNATURE).exists():
            notes.append(f"the signature in {SIGNATURE} covers the old manifest and no longer "
                         f"verifies: re-sign with `intakegate bundles sign {bundle_dir} --key "
                         f"PRIVATE`")
    if as_json:
        typer.echo(json.dumps({"bundle": str(bundle_dir), "bundle_version":
                               verified.bundle_version,
                               "manifest_sha256": verified.manifest_sha256,
                               "recorded_manifest_sha256": recorded,
                               "gates": [g.to_json() for g in gates], "notes": notes,
                               "exit_code": int(report.exit_code)}, indent=2))
    else:
        for gate in gates:
            typer.echo(gate.line())
            for line in gate.evidence:
                typer.echo(f"  {line}")
        for note in notes:
            typer.echo(note)
    return report.exit_code
