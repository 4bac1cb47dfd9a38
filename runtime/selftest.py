"""Load-time self-test: the loaded model, through the one scoring function, reproduces its own
receipt scores before a ticket is admitted.

Why: verification proves the bytes are the gated ones, not that this machine's runtime computes
the gated scores. A vocabulary probe catches a tokenizer larger than the model's embedding, and
the golden rows (a few receipt rows per artifact) catch a runtime whose scores drift.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from intakegate.bundle import VerifiedBundle
from intakegate.bundle.paths import GOLDEN
from intakegate.routing import Reason
from intakegate.runtime.binding import Bound
from intakegate.runtime.refusal import LoadRefused
from intakegate.scoring.encoding import Windows, prepare_text
from intakegate.scoring.ticket_score import ScoreSpec, score_ticket

DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "int8": 5e-3}
MAX_TOLERANCE = 0.05


def probe_vocabulary(backend: Any, tokenizer: Any, spec: ScoreSpec) -> None:
    """Run the highest token id once: a tokenizer larger than the model's embedding is refused
    here, instead of failing (or reading out of bounds) on some later ticket."""
    ids = list(tokenizer.encode("ok").ids) or [0]
    ids = [*ids[:1], spec.vocab_size - 1, *ids[1:]]
    arr = np.asarray([ids], dtype=np.int64)
    windows = Windows(arr, np.ones_like(arr), np.zeros_like(arr), np.zeros(1, dtype=np.int64),
                      (1,))
    try:
        out = np.asarray(backend.logits(windows), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - the probe failing refuses the bundle
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"token_id_out_of_range: the tokenizer's {spec.vocab_size} ids do not "
                          f"fit the model ({type(exc).__name__})") from None
    if out.shape != (1, spec.n_labels) or not np.isfinite(out).all():
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"score_out_of_range: probe output {list(out.shape)} is not "
                          f"finite [1, {spec.n_labels}]")


def golden_self_test(verified: VerifiedBundle, artifact: str, bound: Bound, backend: Any,
                     tokenizer: Any, spec: ScoreSpec) -> str:
    """Score the artifact's golden rows and refuse a drift beyond tolerance.

    `receipt/golden.json` (written by train/export) holds, per artifact (and per CPU family for
    a quantized one: `bound.golden_key`), the model digest it belongs to, a tolerance, and K rows
    `{fixture_id, text, score}` whose scores are the bound receipt run's. Absent file or block: the self-test is skipped (logged).
    """
    if GOLDEN not in verified.manifest.listed:
        return "absent"
    try:
        doc = json.loads(verified.read(GOLDEN).decode("utf-8"))
        # This family's own block, else the artifact's (bundles from before per-family blocks).
        block = doc["artifacts"].get(bound.golden_key) or doc["artifacts"].get(artifact)
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: {GOLDEN} unreadable ({exc})") from None
    if block is None:
        return "absent"
    art = bound.art
    if not isinstance(block, dict) or block.get("model_sha256") != art.model_sha256:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: golden rows of {artifact} belong to another model")
    precision = art.precision.lower()
    default_tol = next((t for p, t in DEFAULT_TOLERANCE.items() if precision.startswith(p)),
                       1e-4)
    tolerance = block.get("tolerance", default_tol)
    tolerance = float(tolerance) if isinstance(tolerance, (int, float)) else -1.0
    rows = block.get("rows")
    if not (0 < tolerance <= MAX_TOLERANCE) or not isinstance(rows, list) or not rows:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: {GOLDEN} needs rows and a tolerance in "
                          f"(0, {MAX_TOLERANCE}]")
    receipt_scores = {r.fixture_id: r.score for r in bound.run.rows}
    texts, expected = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"selftest_mismatch: rows[{i}] is not "
                                                       f"an object")
        fid, text, score = row.get("fixture_id"), row.get("text"), row.get("score")
        if not isinstance(text, str) or not isinstance(score, (int, float)):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"selftest_mismatch: rows[{i}] needs "
                                                       f"text and score")
        own = receipt_scores.get(fid) if fid is not None else None
        if fid is not None and (own is None or abs(own - float(score)) > 1e-9):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"selftest_mismatch: rows[{i}] ({fid}) is not the receipt's score")
        prepared = prepare_text(text, spec.policy)
        if prepared.text is None:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"selftest_mismatch: rows[{i}] refused by the input policy")
        texts.append(prepared.text)
        expected.append(float(score))
    scored = [score_ticket(backend.logits, tokenizer, t, spec) for t in texts]
    drift = 0.0
    for i, (got, want) in enumerate(zip(scored, expected)):
        if got.score is None:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"selftest_mismatch: rows[{i}] gave no score ({got.detail})")
        drift = max(drift, abs(got.score - want))
    if drift > tolerance:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: max |score drift| {drift:.3g} > {tolerance:.3g} "
                          f"over {len(texts)} golden rows")
    return f"passed: {len(texts)} rows, max drift {drift:.2g} <= {tolerance:.2g}"
