"""One quantized variant's scores against the bundle's receipt, as the int8 studies report it.

Shared by `int8_variants.py` (ONNX) and `coreml_int8_variants.py` (Core ML): the one gate's
reason and misses, the smallest margin of a required positive over the pinned threshold
(log-odds) and the largest score change against torch-fp32 (the export's drift report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from intakegate.bundle import VerifiedBundle
from intakegate.export.drift import drift_report
from intakegate.export.regate import Inventory
from intakegate.receipt.gate import GateRow, release_decision
from intakegate.scoring.lexical import log_odds


def gate_variant(bundle: VerifiedBundle, inventory: Inventory, label: str,
                 scores: Sequence[float | None]) -> dict[str, Any]:
    """Gate `scores` (in the receipt's fixture order) and summarize the run."""
    ids = list(inventory.spec.fixture_ids)
    ref = {r.fixture_id: r for r in inventory.reference.rows}
    rows = tuple(GateRow(f, ref[f].slice, ref[f].gold, s) for f, s in zip(ids, scores))
    gate = release_decision(inventory.spec, replace(inventory.reference, rows=rows))
    required = set(inventory.spec.required_slices)
    margins = [float(log_odds(r.score) - log_odds(bundle.threshold)) for r in rows
               if r.slice in required and r.gold == 1 and r.score is not None]
    drift = drift_report(label, rows, inventory.reference_scores, bundle.threshold,
                         inventory.spec.required_slices)
    return {"variant": label, "gate": gate.reason, "required_missed": len(gate.missed),
            "missed": list(gate.missed)[:4], "min_margin_logit": round(min(margins), 4),
            "max_abs_score_delta_vs_torch": round(drift["max_abs_delta"], 4),
            "fixtures": len(ids)}
