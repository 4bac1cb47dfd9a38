"""Choices made on validation rows: the segmentation and the blend weight of a candidate model.

Segment scoring lets a risky request surface from a longer ticket, but a fragment out of context
can also look riskier than its ticket. So every segmentation is weighed on the frozen validation
inventory (single tickets plus composed ones): its rule threshold (lowest required positive,
composed positives included, less the margin) and the routine false-positive rate that
threshold costs, single tickets and composed routine pairs apart. The encoder's segment scores
come from `intakegate.scoring.ticket_score.score_texts`, the serving path; the blend weights are
then applied per segment, as `score_ticket` does, without rescoring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from intakegate.contract.dataset import TicketRow
from intakegate.receipt.composed import is_composed_slice
from intakegate.receipt.threshold import choose_threshold, confusion_at
from intakegate.scoring.lexical import LexicalModel, blend_scores
from intakegate.scoring.segments import SegmentPolicy
from intakegate.scoring.ticket_score import Scored, ScoreSpec, score_texts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringCandidate:
    """One (segmentation, encoder weight) on validation.

    `threshold`/`fp_*`: at the rule threshold over every required positive, composed included
    (what would ship). `*_at_single_threshold`: at the threshold single tickets alone would set,
    which shows what the composed fixtures catch (composed recall below 1 there means single-
    ticket receipts would have let risky composed tickets through). `rows_per_ticket`: model rows
    per validation ticket, the cost of the segmentation.
    """

    segmentation: str
    encoder_weight: float
    threshold: float
    fp_rate: float
    fp_single: float
    fp_pair: float
    single_threshold: float
    composed_recall_at_single_threshold: float
    fp_single_at_single_threshold: float
    fp_pair_at_single_threshold: float
    rows_per_ticket: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fp(scores: np.ndarray, rows: Sequence[TicketRow], threshold: float,
        composed: bool) -> float:
    picked = [i for i, r in enumerate(rows) if r.gold == 0 and is_composed_slice(r.slice)
              == composed]
    if not picked:
        return 0.0
    return float(np.mean(scores[picked] >= threshold))


def _recall(scores: np.ndarray, rows: Sequence[TicketRow], threshold: float,
            required: set[str]) -> float:
    picked = [i for i, r in enumerate(rows) if r.gold == 1 and r.slice in required]
    return float(np.mean(scores[picked] >= threshold)) if picked else 1.0


def ticket_scores(scored: Sequence[Scored], weight: float,
                  lexical: Callable[[Sequence[str]], np.ndarray] | None,
                  texts: Sequence[str]) -> np.ndarray:
    """Each ticket's max over segments of the blended segment score (as `score_ticket`)."""
    out = np.empty(len(scored))
    for i, (s, text) in enumerate(zip(scored, texts)):
        if s.failure is not None:
            raise ValueError(f"validation ticket {i} could not be scored: {s.failure.value} "
                             f"{s.detail}")
        enc = np.asarray([p.encoder for p in s.segments])
        if lexical is None or weight >= 1.0:
            out[i] = enc.max()
            continue
        seg_texts = [text[p.segment.start:p.segment.end] for p in s.segments]
        out[i] = blend_scores(enc, lexical(seg_texts), weight).max()
    return out


def evaluate_candidates(logits_fn: Any, tokenizer: Any, spec: ScoreSpec,
                        segmentations: Sequence[SegmentPolicy], rows: Sequence[TicketRow],
                        prepared: Sequence[str], required: Sequence[str],
                        lexical: LexicalModel | None, weights: Sequence[float],
                        margin: float, workers: int = 1) -> list[ScoringCandidate]:
    """Every segmentation x encoder weight, scored on the validation inventory (`workers`
    tickets at once; the scores do not depend on it)."""
    required_all = set(required) | {f"composed:{s}" for s in required}
    composed_required = {f"composed:{s}" for s in required}
    golds = [r.gold for r in rows]
    slices = [r.slice for r in rows]
    single_rows = [i for i, r in enumerate(rows) if not is_composed_slice(r.slice)]
    cache: dict[str, float] = {}

    def lex(texts: Sequence[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in cache})
        if todo and lexical is not None:
            cache.update(zip(todo, lexical.scores(todo).tolist()))
        return np.asarray([cache[t] for t in texts])

    out: list[ScoringCandidate] = []
    for seg in segmentations:
        seg_spec = replace(spec, policy=replace(spec.policy, segmentation=seg), blend=None)
        scored = score_texts(logits_fn, tokenizer, prepared, seg_spec, workers=workers)
        rows_per_ticket = float(np.mean([s.rows for s in scored]))
        for w in sorted({float(x) for x in (weights or (1.0,))}, reverse=True):
            scores = ticket_scores(scored, w, lex if lexical is not None else None, prepared)
            th = choose_threshold(scores.tolist(), golds, slices, required_all, margin)
            single_th = choose_threshold(scores[single_rows].tolist(),
                                         [golds[i] for i in single_rows],
                                         [slices[i] for i in single_rows], required, margin)
            cand = ScoringCandidate(
                seg.name, w, th, confusion_at(scores.tolist(), golds, th).fp_rate,
                _fp(scores, rows, th, False), _fp(scores, rows, th, True), single_th,
                _recall(scores, rows, single_th, composed_required),
                _fp(scores, rows, single_th, False), _fp(scores, rows, single_th, True),
                rows_per_ticket)
            log.info("candidate %s w=%.2f: threshold %.4f fp %.4f (single %.4f, pairs %.4f); "
                     "at the single-ticket threshold composed recall %.3f", cand.segmentation,
                     w, th, cand.fp_rate, cand.fp_single, cand.fp_pair,
                     cand.composed_recall_at_single_threshold)
            out.append(cand)
    return out


def best_candidate(candidates: Sequence[ScoringCandidate]) -> ScoringCandidate:
    """Fewest routine validation tickets to people; ties: cheaper segmentation, then more
    encoder weight."""
    return min(candidates, key=lambda c: (round(c.fp_rate, 9), c.rows_per_ticket,
                                          -c.encoder_weight))
