"""Artifact-to-receipt binding: the artifact served is the one its own receipt gated.

Why: a bundle carries several artifacts, each with its own receipt run. Before any model is
loaded, the requested artifact's digest must be the one its receipt names, the run must be its
own (not shared with another artifact), and that run must re-gate to eligible against the
bundle's frozen receipt, parsed from the verified bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from intakegate.bundle import ArtifactEntry, BundleError, VerifiedBundle
from intakegate.errors import InputError
from intakegate.hardware import cpu_gate_key
from intakegate.jsonio import loads_strict
from intakegate.receipt.gate import Run, release_decision, run_from_json, spec_from_json
from intakegate.receipt.golden import golden_key
from intakegate.routing import Reason
from intakegate.runtime.backends import this_cpu_family
from intakegate.runtime.refusal import HeldNotes, LoadRefused


def artifact_digest(verified: VerifiedBundle, rel: str) -> str:
    """The digest train/export record for an artifact path, from the verified file table."""
    files = {e.path: e.sha256 for e in verified.manifest.files}
    if rel in files:
        return files[rel]
    if f"{rel}/model.safetensors" in files:  # the torch-fp32 directory: its weights file
        return files[f"{rel}/model.safetensors"]
    digest = hashlib.sha256()
    members = sorted((p[len(rel) + 1:], s) for p, s in files.items() if p.startswith(rel + "/"))
    if not members:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"model_missing: nothing at {rel}")
    for sub, sha in members:
        digest.update(f"{sub}\0{sha}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Bound:
    """An artifact entry together with its own, re-gated receipt run, and the golden block
    (`intakegate.receipt.golden.golden_key`) whose scores are that run's."""

    art: ArtifactEntry
    run: Run
    golden_key: str


def receipt_for_here(art: ArtifactEntry) -> tuple[str | None, str | None]:
    """The run and `gates` key that hold on this machine: a quantized artifact's own receipt
    on this CPU family when one was recorded (each family computes its own int8 scores), else
    the receipt in force."""
    if art.quantized:
        family = this_cpu_family()
        gate = art.family_gate(family)
        if gate is not None and gate.eligible and gate.receipt_run:
            return gate.receipt_run, cpu_gate_key(family)
    return art.receipt_run, art.gated_with


def runs_named(art: ArtifactEntry) -> set[str]:
    """Every receipt run file an entry names: the one in force and each runtime's own."""
    return {r for r in (art.receipt_run, *(g.receipt_run for g in art.gates.values())) if r}


def check_artifact(verified: VerifiedBundle, artifact: str, held: HeldNotes | None = None
                   ) -> Bound:
    """The artifact exists, is eligible, and its receipt is its own (bound to its digest).

    `held` (measurement-only loads) lets a held bundle or artifact through with a note; the
    digest binding and the receipt's integrity are checked either way.
    """
    held = held or HeldNotes(False)
    manifest = verified.manifest
    if not manifest.eligible:
        held.held(f"bundle_held: {manifest.decision_reason}")
    artifacts = manifest.artifacts
    if artifact not in artifacts:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE,
                          f"artifact_missing: bundle has no {artifact} (has: "
                          f"{', '.join(sorted(artifacts)) or 'none'}); run `intakegate export` "
                          f"or pass --artifact")
    art = artifacts[artifact]
    if not art.eligible:
        held.held(f"artifact_held: {artifact} is {art.status.value} ({art.reason})")
    digest = artifact_digest(verified, art.path)
    if art.sha256 != digest or art.model_sha256 != digest:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"receipt_mismatch: {artifact} receipt names model "
                          f"{str(art.model_sha256)[:12]}, artifact is {digest[:12]}")
    run_rel, gated_with = receipt_for_here(art)
    if run_rel is None:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {artifact} has no "
                                                   f"receipt run")
    # No run this artifact names (in force or per family) may be another artifact's.
    mine = runs_named(art)
    shared = sorted(n for n, a in artifacts.items() if n != artifact and mine & runs_named(a))
    if shared:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {artifact} reuses the "
                                                   f"receipt run of {shared[0]}")
    run = check_receipt(verified, artifact, run_rel, held)
    return Bound(art, run, golden_key(artifact, gated_with))


def check_receipt(verified: VerifiedBundle, artifact: str, run_rel: str,
                  held: HeldNotes | None = None) -> Run:
    """The artifact's own run re-gates to eligible against the bundle's frozen receipt.

    Both files are parsed from the verified bytes, never re-read from disk.
    """
    manifest = verified.manifest
    try:
        spec = spec_from_json(loads_strict(verified.read(manifest.receipt).decode("utf-8")))
        run = run_from_json(loads_strict(verified.read(run_rel).decode("utf-8")))
    except BundleError as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {exc}") from None
    except (InputError, UnicodeDecodeError) as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {run_rel}: {exc}"
                          ) from None
    if run.bundle_version != manifest.bundle_version:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {run_rel} is a run of "
                                                   f"{run.bundle_version}")
    if run.threshold != manifest.threshold:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {run_rel} threshold "
                                                   f"{run.threshold} != manifest")
    try:
        result = release_decision(spec, run)
    except InputError as exc:  # a malformed inventory (a composed id without its parts)
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {exc}") from None
    if not result.eligible:
        (held or HeldNotes(False)).held(f"artifact_held: {artifact} receipt re-gates to "
                                        f"{result.reason}")
    return run
