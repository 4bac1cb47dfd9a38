"""Verify on device: run a quantized artifact's full receipt once on a CPU family no receipt in
the bundle covers, and admit tickets only if it passes.

Why: int8 kernels differ per CPU family, so a receipt holds for the families it was computed
on. A pack made `--with-fixtures` carries the receipt's texts; with `verify_on_device=True` the
router scores every fixture here, through the one scoring function, and lets the one gate
decide. The result is cached, keyed by artifact digest, CPU family and onnxruntime version, in
the cache directory the caller chose (default: the platform's user cache directory); nothing is
written without the option.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from intakegate.bundle import ArtifactEntry, BundleError, VerifiedBundle, atomic_write, now_iso
from intakegate.bundle.paths import FIXTURES
from intakegate.errors import InputError
from intakegate.jsonio import dumps_canonical, loads_strict
from intakegate.parallel import cpu_workers
from intakegate.receipt.fixtures import fixture_texts
from intakegate.receipt.gate import GateRow, Run, release_decision, spec_from_json
from intakegate.routing import Reason
from intakegate.scoring.ticket_score import ScoreSpec, score_texts

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """The platform's user cache directory for intakegate."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "intakegate"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "intakegate" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "intakegate"


def cache_path(cache_dir: Path, model_sha256: str, family: str) -> Path:
    import onnxruntime as ort

    return Path(cache_dir) / (f"device-receipt-{model_sha256[:24]}-{family}-ort"
                              f"{ort.__version__}.json")


def verify_here(verified: VerifiedBundle, artifact: str, art: ArtifactEntry, own_run: Run,
                logits: Any, tokenizer: Any, spec: ScoreSpec, family: str, cache_dir: Path | None,
                refused: type[Exception]) -> str:
    """The cached or freshly computed receipt of `artifact` on this CPU family; raises
    `refused(reason, detail)` when it holds or cannot be computed."""
    path = cache_path(cache_dir or default_cache_dir(), str(art.model_sha256), family)
    cached = _read_cache(path, str(art.model_sha256), family)
    if cached is None:
        cached = _compute(verified, artifact, own_run, logits, tokenizer, spec, family, refused)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, dumps_canonical(cached).encode("utf-8"))
        how = "computed"
    else:
        how = "cached"
    if cached["decision"] != "eligible_for_shadow":
        raise refused(Reason.ARTIFACT_HELD, f"device_receipt_held: {artifact} re-gates to "
                                            f"{cached['reason']} on this CPU ({family}); "
                                            f"{how} in {path}")
    return f"device receipt {how} on {family}: {cached['reason']} ({path})"


def _read_cache(path: Path, model_sha256: str, family: str) -> dict[str, Any] | None:
    """A cache entry for exactly this artifact and family, or None (absent or unreadable)."""
    try:
        obj = loads_strict(path.read_text(encoding="utf-8"), path=path)
    except (OSError, InputError, UnicodeDecodeError):
        return None
    if (not isinstance(obj, dict) or obj.get("format") != CACHE_FORMAT
            or obj.get("model_sha256") != model_sha256 or obj.get("cpu_family") != family
            or obj.get("decision") not in ("eligible_for_shadow", "hold")):
        return None
    return obj


def _compute(verified: VerifiedBundle, artifact: str, own_run: Run, logits: Any, tokenizer: Any,
             spec: ScoreSpec, family: str, refused: type[Exception]) -> dict[str, Any]:
    """Score every receipt fixture here and gate the run against the frozen receipt."""
    import onnxruntime as ort

    m = verified.manifest
    if FIXTURES not in m.listed:
        raise refused(Reason.ARTIFACT_HELD, f"hw_not_validated: this CPU is {family} and the "
                                            f"bundle carries no {FIXTURES} to verify on device; "
                                            f"make the pack --with-fixtures")
    try:
        receipt = spec_from_json(loads_strict(verified.read(m.receipt).decode("utf-8")))
        fixtures, problem = fixture_texts(receipt.fixture_ids, receipt.fixture_sha256,
                                          verified.read)
    except (BundleError, InputError, UnicodeDecodeError) as exc:
        raise refused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {exc}") from None
    if problem:
        raise refused(Reason.ARTIFACT_HELD, f"device_receipt_held: {problem}")
    own = {r.fixture_id: r for r in own_run.rows}
    ids = [fid for fid in receipt.fixture_ids if fid in own]
    scored = score_texts(logits, tokenizer, [fixtures[fid].text for fid in ids], spec,
                         workers=cpu_workers())
    rows = tuple(GateRow(fid, own[fid].slice, own[fid].gold,
                         s.score if s.score is not None and math.isfinite(s.score) else None)
                 for fid, s in zip(ids, scored))
    try:
        result = release_decision(receipt, Run(own_run.bundle_version, own_run.identity,
                                               own_run.threshold, rows))
    except InputError as exc:  # a malformed inventory (a composed id without its parts)
        raise refused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {exc}") from None
    return {"format": CACHE_FORMAT, "model_sha256": verified.manifest.artifacts[artifact]
            .model_sha256, "artifact": artifact, "cpu_family": family,
            "onnxruntime": ort.__version__, "bundle_version": own_run.bundle_version,
            "manifest_sha256": verified.manifest_sha256, "decision": result.decision.value,
            "reason": result.reason, "fixtures": len(rows), "when": now_iso()}
