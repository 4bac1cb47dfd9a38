"""Slim packs: a deployable bundle holding one artifact and what serving it needs.

Why: the router verifies every file its manifest lists, so a client shipping the 23 MB int8 model
had to carry the whole bundle (torch weights, fp32 ONNX, Core ML packages). A pack is a bundle
of its own: the chosen artifact, the tokenizer, the lexical model, the receipt spec and that
artifact's receipt runs and golden rows (one per CPU family for int8), the documents, and a
manifest that hashes every file and names its parent (`derived_from`: the parent's manifest
digest). The router loads it like
any bundle, and it is signed like any bundle (`bundles sign PACK`). Fixture texts and the
benchmark rows are customer text: left out unless `with_fixtures`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from intakegate.bundle import (
    MANIFEST,
    Artifact,
    ArtifactEntry,
    BundleError,
    DerivedFrom,
    VerifiedBundle,
    now_iso,
    verify_bundle,
    write_manifest,
)
from intakegate.bundle.paths import DOCS_DIR, EVAL_ROWS, FIXTURES, GOLDEN, SPLIT_MANIFEST
from intakegate.jsonio import loads_strict, write_json
from intakegate.receipt.gate import release_decision, run_from_json, spec_from_json
from intakegate.receipt.golden import is_block_of
from intakegate.scoring.lexical import LexicalFormatError, LexicalModel
from intakegate.scoring.tokenizer_pins import pinned_to_source

CUSTOMER_TEXT = (FIXTURES, EVAL_ROWS)


@dataclass(frozen=True)
class PackResult:
    """Where the pack went, what it holds, and how it compares with its parent."""

    out: Path
    manifest_sha256: str
    parent_sha256: str
    files: int
    size_bytes: int
    parent_size_bytes: int


def _under(rel: str, prefix: str) -> bool:
    return rel == prefix or rel.startswith(prefix.rstrip("/") + "/")


def check_packable(verified: VerifiedBundle, artifact: Artifact,
                   measurement_only: bool = False) -> ArtifactEntry:
    """The artifact's entry, when the bundle and the artifact may ship; else BundleError
    `artifact_held` (or `artifact_missing`) with the reason. `measurement_only` skips the
    release checks: the pack keeps its parent's held status, so the router still refuses to
    serve it and only `intakegate bench` (a measurement-only load) can time it."""
    m = verified.manifest
    entry = m.artifacts.get(artifact.value)
    if entry is None:
        raise BundleError("artifact_missing", f"the bundle has no {artifact.value} (has "
                                              f"{sorted(m.artifacts)}); run `intakegate "
                                              f"export` first", str(verified.root))
    if measurement_only:
        return entry
    if not m.eligible:
        raise BundleError("artifact_held", f"the bundle is held ({m.decision_reason}); a "
                                           f"held bundle is not packed", str(verified.root))
    if not entry.eligible or not entry.receipt_run:
        raise BundleError("artifact_held", f"{artifact.value} is {entry.status.value} "
                                           f"({entry.reason}); a held artifact is not "
                                           f"packed", str(verified.root))
    spec = spec_from_json(loads_strict(verified.read(m.receipt).decode("utf-8")))
    run = run_from_json(loads_strict(verified.read(entry.receipt_run).decode("utf-8")))
    result = release_decision(spec, run)
    if not result.eligible:
        raise BundleError("artifact_held", f"{artifact.value}'s receipt re-gates to "
                                           f"{result.reason}; not packed", str(verified.root))
    return entry


def pack_bundle(bundle_dir: Path, artifact: Artifact, out: Path,
                with_fixtures: bool = False, measurement_only: bool = False) -> PackResult:
    """Verify the parent, copy what serving `artifact` needs from its verified bytes, and
    write the pack's own manifest. `out` must not exist; nothing is left behind on failure.
    `measurement_only` also packs a held artifact, which stays held (`check_packable`)."""
    verified = verify_bundle(bundle_dir)  # a tampered parent is refused here
    entry = check_packable(verified, artifact, measurement_only)
    m = verified.manifest
    out = Path(out)
    if out.exists():
        raise BundleError("pack_exists", "the output directory exists; choose a new one",
                          str(out))
    # Every CPU family's own run beside the receipt in force: the pack serves each family by
    # its own receipt, as the parent does.
    runs = sorted({run for run in (entry.receipt_run, *(g.receipt_run
                                                         for g in entry.gates.values()))
                   if run})
    try:
        lexical = (LexicalModel.files(m.score_blend.lexical, verified.read)
                   if m.score_blend is not None else ())
    except LexicalFormatError as exc:
        raise BundleError("manifest_invalid", str(exc), str(bundle_dir)) from None
    keep_prefixes = [entry.path, m.tokenizer, m.receipt, *runs, DOCS_DIR, SPLIT_MANIFEST,
                     *lexical,
                     *(CUSTOMER_TEXT if with_fixtures else ())]
    # The other artifacts' drift reports describe what the pack does not ship.
    foreign = {str(a.drift["report"]) for name, a in m.artifacts.items()
               if name != artifact.value and a.drift and a.drift.get("report")}
    listed = [e.path for e in m.files]
    chosen = [rel for rel in listed
              if any(_under(rel, p) for p in keep_prefixes) and rel not in foreign]
    staging = out.with_name(f".{out.name}.packing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for rel in chosen:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(verified.read(rel))  # re-checked against the parent's digest
        golden = loads_strict(verified.read(GOLDEN).decode("utf-8"))
        blocks = {k: b for k, b in golden.get("artifacts", {}).items()
                  if is_block_of(k, artifact.value)}
        if not blocks:
            raise BundleError("selftest_missing", f"no golden rows for {artifact.value}",
                              GOLDEN)
        write_json(staging / GOLDEN, {**golden, "artifacts": blocks})
        try:  # checked in full once here, so the pack's every load can skip the JSON
            pins = pinned_to_source(m.tokenizer_pins, verified.read(m.tokenizer))
        except ValueError as exc:
            raise BundleError("policy_mismatch", str(exc), m.tokenizer) from None
        manifest = replace(
            m, artifacts={artifact.value: entry}, tokenizer_pins=pins,
            documents={k: v for k, v in (m.documents or {}).items() if (staging / v).is_file()},
            derived_from=DerivedFrom(verified.manifest_sha256, m.bundle_version, artifact.value,
                                     with_fixtures, now_iso()))
        sha = write_manifest(staging, manifest)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    parent = sum(e.size for e in m.files) + (verified.root / MANIFEST).stat().st_size
    return PackResult(out, sha, verified.manifest_sha256, len(chosen) + 1, size, parent)
