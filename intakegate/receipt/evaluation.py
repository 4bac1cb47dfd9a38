"""Slice-level evaluation at a frozen threshold: the figures every report shows, in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from intakegate.contract.dataset import TicketRow
from intakegate.receipt.composed import ComposedRecipe
from intakegate.receipt.fixtures import text_sha256
from intakegate.receipt.gate import GateRow, ReceiptSpec, Run
from intakegate.receipt.threshold import confusion_at


@dataclass(frozen=True)
class SliceFigures:
    slice: str
    positives: int
    caught: int
    missed_ids: tuple[str, ...]

    @property
    def recall(self) -> float:
        return self.caught / self.positives if self.positives else 1.0


def evaluate_at(rows: Sequence[TicketRow], scores: Sequence[float], threshold: float,
                required_slices: Iterable[str]) -> dict[str, Any]:
    """Recall per required slice (with missed ids), positive recall, FP rate, precision."""
    required = sorted(set(required_slices))
    golds = [row.gold for row in rows]
    point = confusion_at(scores, golds, threshold)
    per_slice = {}
    for name in required:
        members = [(row, s) for row, s in zip(rows, scores) if row.slice == name and row.gold]
        missed = tuple(row.id for row, s in members if not s >= threshold)
        per_slice[name] = SliceFigures(name, len(members), len(members) - len(missed), missed)
    required_missed = [i for f in per_slice.values() for i in f.missed_ids]
    return {
        "threshold": threshold,
        "n": len(rows),
        "positives": point.tp + point.fn,
        "negatives": point.fp + point.tn,
        "tp": point.tp, "fp": point.fp, "fn": point.fn, "tn": point.tn,
        "positive_recall": point.recall,
        "false_positive_rate": point.fp_rate,
        "precision": point.precision,
        "required_missed": len(required_missed),
        "required_positives": sum(f.positives for f in per_slice.values()),
        "slices": {
            name: {"positives": f.positives, "caught": f.caught, "recall": f.recall,
                   "missed_ids": list(f.missed_ids)}
            for name, f in per_slice.items()
        },
    }


def receipt_spec(receipt_version: str, identity: dict[str, str], rows: Sequence[TicketRow],
                 required_slices: Iterable[str], fp_budget: float | None,
                 composed: ComposedRecipe | None = None,
                 shadow_floors: Mapping[str, float] | None = None) -> ReceiptSpec:
    """The frozen receipt for a validation inventory: every row id (composed ones included,
    with the recipe that generated them) and the digest of its text, nothing else."""
    return ReceiptSpec(receipt_version, identity, tuple(row.id for row in rows),
                       frozenset(required_slices), fp_budget, composed,
                       {row.id: text_sha256(row.text) for row in rows},
                       dict(shadow_floors or {}))


def build_run(bundle_version: str, identity: dict[str, str], threshold: float,
              rows: Sequence[TicketRow], scores: Sequence[float | None]) -> Run:
    """A run over the receipt's rows with one candidate's scores."""
    return Run(bundle_version, identity, threshold, tuple(
        GateRow(row.id, row.slice, row.gold, None if s is None else float(s))
        for row, s in zip(rows, scores)))


def lowest_required_positives(rows: Sequence[TicketRow], scores: Sequence[float],
                              required_slices: Iterable[str], k: int = 5) -> list[dict[str, Any]]:
    """The rows that set the threshold, and the FP rate without each (for adjudication)."""
    required = set(required_slices)
    pos = sorted(((s, row) for row, s in zip(rows, scores) if row.gold and row.slice in required),
                 key=lambda t: t[0])
    negatives = [s for row, s in zip(rows, scores) if not row.gold]
    out = []
    for i, (score, row) in enumerate(pos[:k]):
        next_threshold = pos[i + 1][0] if i + 1 < len(pos) else score
        fp_without = (sum(1 for s in negatives if s >= next_threshold) / len(negatives)
                      if negatives else 0.0)
        out.append({"id": row.id, "slice": row.slice, "text": row.text, "score": score,
                    "fp_rate_if_threshold_were_next": fp_without,
                    "next_threshold": next_threshold})
    return out
