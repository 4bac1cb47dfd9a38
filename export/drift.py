"""Score drift of an artifact against the reference torch-fp32 run, row by row.

The gate decides; this report explains. It lists every route flip by fixture id and every
required-slice positive whose margin above the pinned threshold is below a stated tolerance, so a
reviewer sees how close an eligible artifact came to missing one. Note that the threshold is the
lowest required-positive reference score, so that row always has a reference margin of zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from intakegate.receipt.gate import GateRow
from intakegate.vocab import Route

MARGIN_TOLERANCE = 0.01


def route_of(score: float | None, threshold: float) -> str:
    """The route the runtime would take; a missing or invalid score fails closed to a person."""
    if score is None or not score == score or not 0.0 <= score <= 1.0:
        return Route.HUMAN_REVIEW_NOW.value
    return (Route.HUMAN_REVIEW_NOW if score >= threshold else Route.GUARDED_AGENT).value


def drift_report(artifact: str, rows: Sequence[GateRow], reference: Mapping[str, float],
                 threshold: float, required_slices: frozenset[str],
                 tolerance: float = MARGIN_TOLERANCE) -> dict[str, Any]:
    """Compare each scored row with its reference score (rows without a reference are listed)."""
    out_rows = []
    deltas = []
    flips = []
    thin = []
    unscored = []
    for row in rows:
        ref = reference.get(row.fixture_id)
        score = row.score
        delta = None if score is None or ref is None else float(score) - float(ref)
        if delta is None:
            unscored.append(row.fixture_id)
        else:
            deltas.append(abs(delta))
        ref_route = None if ref is None else route_of(ref, threshold)
        new_route = route_of(score, threshold)
        if ref_route is not None and ref_route != new_route:
            flips.append({"id": row.fixture_id, "slice": row.slice, "gold": row.gold,
                          "reference_score": ref, "score": score, "reference_route": ref_route,
                          "route": new_route})
        if row.gold == 1 and row.slice in required_slices:
            margin = None if score is None else float(score) - threshold
            if margin is None or margin < tolerance:
                thin.append({"id": row.fixture_id, "slice": row.slice, "score": score,
                             "margin": margin, "reference_margin":
                             None if ref is None else float(ref) - threshold})
        out_rows.append({"id": row.fixture_id, "slice": row.slice, "gold": row.gold,
                         "reference_score": ref, "score": score, "delta": delta})
    return {
        "artifact": artifact,
        "reference": "torch-fp32",
        "threshold": threshold,
        "margin_tolerance": tolerance,
        "rows_compared": len(deltas),
        "max_abs_delta": max(deltas) if deltas else None,
        "mean_abs_delta": sum(deltas) / len(deltas) if deltas else None,
        "route_flips": flips,
        "thin_margin_required_positives": sorted(thin, key=lambda t: (t["margin"] is not None,
                                                                      t["margin"] or 0.0)),
        "unscored": unscored,
        "rows": out_rows,
    }


def drift_summary(report: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The manifest's short form of a drift report."""
    return {"report": path, "reference": report["reference"],
            "max_abs_delta": report["max_abs_delta"], "mean_abs_delta": report["mean_abs_delta"],
            "route_flips": [f["id"] for f in report["route_flips"]],
            "thin_margin_required_positives": [t["id"] for t in
                                               report["thin_margin_required_positives"]],
            "margin_tolerance": report["margin_tolerance"],
            "gated_on": report.get("gated_with")}
