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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.bundle import (Artifact, BundleError, Status, VerifiedBundle, resolve_bundle,
                               verify_bundle)
from intakegate.encoding import InputPolicy, tokenizer_matches_policy
from intakegate.fixtures import FIXTURES, fixture_texts
from intakegate.export.artifacts import parse_artifacts
from intakegate.export.backends import BackendUnavailable, gate_backend
from intakegate.export.drift import MARGIN_TOLERANCE, drift_report
from intakegate.export.results import (REFERENCE, ArtifactGate, updated_manifest,
                                       write_gate_files, write_golden_rows)
from intakegate.gate import (IDENTITY_FIELDS, GateRow, ReceiptSpec, Run, release_decision,
                             run_from_json, spec_from_json)
from intakegate.jsonio import loads_strict
from intakegate.lexical import blend_from_manifest
from intakegate.ticket_score import ScoreSpec, progress_log, score_texts
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


def _read_json(bundle: VerifiedBundle, rel: str) -> Any:
    return loads_strict(bundle.read(rel).decode("utf-8"), path=rel)


def load_inventory(bundle: VerifiedBundle) -> Inventory:
    """The receipt spec, the reference run (slice and gold per fixture) and the fixture texts,
    all from the bundle itself (receipt/fixtures.jsonl): no dataset is opened."""
    m = bundle.manifest
    spec = spec_from_json(_read_json(bundle, m["receipt"]), Path(m["receipt"]))
    ref_entry = m["artifacts"].get(REFERENCE.value)
    if ref_entry is None or not ref_entry.get("receipt_run"):
        raise BundleError("manifest_invalid", "the bundle has no torch-fp32 receipt run to "
                                              "compare with", "manifest.json")
    reference = run_from_json(_read_json(bundle, ref_entry["receipt_run"]),
                              Path(ref_entry["receipt_run"]))
    if FIXTURES not in {e["path"] for e in m["files"]}:
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


def regate_artifact(bundle: VerifiedBundle, artifact: Artifact, inventory: Inventory,
                    tolerance: float = MARGIN_TOLERANCE) -> ArtifactGate:
    """Score the frozen inventory with the artifact's backend and gate the run."""
    started = time.monotonic()
    if inventory.hold_reason:
        return _hold(artifact, bundle, inventory.hold_reason)
    m = bundle.manifest
    policy = InputPolicy.from_json(m["input_policy"])
    tokenizer_json = bundle.read(m["tokenizer"]).decode("utf-8")
    mismatch = tokenizer_matches_policy(tokenizer_json, policy)
    if mismatch:
        log.error("%s: %s", m["tokenizer"], mismatch)
        return _hold(artifact, bundle, "tokenizer_policy_mismatch")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    ref_rows = {r.fixture_id: r for r in inventory.reference.rows}
    scorable = [fid for fid in inventory.spec.fixture_ids
                if fid in ref_rows and fid in inventory.texts]
    spec = ScoreSpec(policy, tuple(m["score_head"]["positive"]), len(m["score_head"]["labels"]),
                     tokenizer.get_vocab_size(with_added_tokens=True), None,
                     blend_from_manifest(m, bundle.read))
    try:
        backend = gate_backend(artifact, bundle)
    except BackendUnavailable as exc:
        log.warning("%s/%s: %s", bundle.bundle_version, artifact.value, exc)
        return ArtifactGate(artifact, bundle.bundle_version, Status.PENDING_REGATE, exc.reason)
    except BundleError as exc:
        return _hold(artifact, bundle, exc.code + (f":{exc.path}" if exc.path else ""))
    except Exception as exc:  # noqa: BLE001 - an artifact its runtime cannot load is held
        log.exception("%s/%s: the backend failed to load", bundle.bundle_version, artifact.value)
        return _hold(artifact, bundle, f"backend_error:{type(exc).__name__}")
    with backend:
        log.info("%s/%s: scoring %d fixtures with %s", bundle.bundle_version, artifact.value,
                 len(scorable), backend.gated_with)
        try:
            scored = score_texts(backend, tokenizer, [inventory.texts[f] for f in scorable],
                                 spec, progress_log(f"{bundle.bundle_version}/{artifact.value}"))
            scores = [s.score for s in scored]
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot score is held
            log.exception("%s/%s: scoring failed", bundle.bundle_version, artifact.value)
            return _hold(artifact, bundle, f"backend_error:{type(exc).__name__}",
                         gated_with=backend.gated_with)
    rows = tuple(GateRow(fid, ref_rows[fid].slice, ref_rows[fid].gold, _finite(s))
                 for fid, s in zip(scorable, scores))
    identity = {k: str(m[k]) for k in IDENTITY_FIELDS}
    run = Run(bundle.bundle_version, identity, bundle.threshold, rows)
    result = release_decision(inventory.spec, run)
    drift = drift_report(artifact.value, rows, inventory.reference_scores, bundle.threshold,
                         inventory.spec.required_slices, tolerance)
    drift["gated_with"] = {"runtime": backend.gated_with, **backend.details}
    drift["gate"] = result.to_json()
    status = Status.ELIGIBLE if result.decision is GateDecision.ELIGIBLE_FOR_SHADOW else Status.HOLD
    return ArtifactGate(artifact, bundle.bundle_version, status, result.reason,
                        backend.gated_with, run, drift, backend.details,
                        time.monotonic() - started)


def _finite(score: float | None) -> float | None:
    """Non-finite scores are recorded as null (the gate holds them as invalid_score)."""
    return score if score is not None and math.isfinite(score) else None


def regate_bundle(bundle_dir: Path, artifacts: Sequence[Artifact] | None = None
                  ) -> list[ArtifactGate]:
    """Verify, re-gate the named (default: every listed) artifacts and record the results.

    A bundle that fails verification is refused before anything is scored or written.
    """
    from intakegate.export.commit import commit_manifest, manifest_sha, refresh_active_pointer

    verified = verify_bundle(bundle_dir)
    if artifacts is None:
        artifacts = [a for a in Artifact if a.value in verified.manifest["artifacts"]]
    inventory = load_inventory(verified)
    gates = []
    for artifact in artifacts:
        if artifact.value not in verified.manifest["artifacts"]:
            gates.append(_hold(artifact, verified, "not_exported"))
            continue
        gates.append(regate_artifact(verified, artifact, inventory))
    recorded = [g for g in gates if g.reason != "not_exported"]
    written = write_gate_files(bundle_dir, recorded, verified.manifest["artifacts"])
    written += sorted(set(write_golden_rows(bundle_dir, dict(verified.manifest), recorded)))
    old_sha = manifest_sha(bundle_dir)
    new_sha = commit_manifest(bundle_dir, updated_manifest(dict(verified.manifest), recorded),
                              verified, written)
    refresh_active_pointer(bundle_dir, old_sha, new_sha)
    return gates


def gate_bundle_command(bundle: Path, artifacts: list[str], bundles_root: Path) -> int:
    """`intakegate gate BUNDLE [--artifact A]`: one line per artifact; 0 only if all eligible."""
    import typer

    bundle_dir = resolve_bundle(bundle, bundles_root)
    gates = regate_bundle(bundle_dir, parse_artifacts(artifacts) if artifacts else None)
    for gate in gates:
        typer.echo(gate.line())
    return 0 if gates and all(g.eligible for g in gates) else 1
