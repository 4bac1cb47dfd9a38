"""Choices made on validation rows: the segmentation and the blend weight of a candidate model.

Segment scoring lets a risky request surface from a longer ticket, but a fragment out of context
can also look riskier than its ticket. So every segmentation is weighed on the frozen validation
inventory (single tickets plus composed ones). The encoder's segment scores come from
`intakegate.scoring.ticket_score.score_texts`, the serving path; the blend weights are then
applied per segment, as `score_ticket` does, without rescoring.

The rule must not reward fitting the few lowest validation positives (the threshold is set by
the lowest one, so ranking candidates by FP at that threshold on the same rows picks whichever
candidate happens to score those few highest). So validation is split in two halves by account
(by ticket where the data has no accounts; a composed copy goes with its source); for each
candidate the rule threshold is set on one half and misses and FP are counted on the other, both
ways. Shape copies (`intakegate.receipt.shapes`) count like any fixture: a missed copy misses its
source, and a shape's routine copies add their overhead. Candidates rank by held-half misses
(distinct sources), then held-half single FP, then the worse held-half overhead (composition or
any shape); among those within one point of the best single FP with the same
misses, the fewest model rows per ticket wins (segment cost). The final threshold is then set on
all of validation by the lesson's rule, in the pipeline.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from intakegate.contract.dataset import TicketRow
from intakegate.receipt.composed import PREFIX, parse_composed_id
from intakegate.receipt.evidence import Labelled, composition, shape_costs, source_evidence
from intakegate.receipt.shapes import (
    is_single_slice,
    parse_shape_id,
    required_fixture_slices,
    shape_kind,
)
from intakegate.receipt.threshold import choose_threshold
from intakegate.scoring.lexical import LexicalModel, blend_scores
from intakegate.scoring.logit_range import LogitRange, LogitRecorder
from intakegate.scoring.segments import SegmentPolicy
from intakegate.scoring.ticket_score import RowLogits, Scored, ScoreSpec, score_texts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldHalf:
    """The transfer test of one candidate: threshold on one half, counted on the other, both
    ways. `missed`/`sources`: distinct required sources missed on the held halves;
    `fp_single`/`overhead`/`shape_overhead`: the mean over the two held halves (overhead None
    without pairs; shape_overhead, the worst shape's, None without shape copies)."""

    missed: int
    sources: int
    fp_single: float
    overhead: float | None
    shape_overhead: float | None = None

    @property
    def worst_overhead(self) -> float:
        return max(self.overhead or 0.0, self.shape_overhead or 0.0)

    def key(self) -> tuple[int, float, float]:
        return (self.missed, round(self.fp_single, 6), round(self.worst_overhead, 6))


@dataclass(frozen=True)
class ScoredValidation:
    """One segmentation's segment scores of the validation inventory (no blend) and the logit
    range the encoder returned on them: enough to give any blend weight's ticket scores, as
    the serving path would, without scoring again."""

    segmentation: str
    scored: tuple[Scored, ...]
    logit_range: LogitRange


@dataclass(frozen=True)
class ScoringCandidate:
    """One (segmentation, encoder weight) on validation.

    `threshold`/`fp_*`: on all of validation at the rule threshold over every required
    positive, composed included (what would ship); `composition_overhead`: pair FP beyond what
    the single FP explains. `held`: the transfer test the choice ranks by.
    `*_at_single_threshold`: at the threshold single tickets alone would set, which shows what
    the composed fixtures catch. `shape_fp`: per shape kind, the FP of its routine copies;
    `shape_overhead`: the worst kind's beyond the single FP (None without shape copies).
    `rows_per_ticket`: model rows per validation ticket, the cost
    of the segmentation.
    """

    segmentation: str
    encoder_weight: float
    threshold: float
    fp_single: float
    fp_pair: float | None
    composition_overhead: float | None
    held: HeldHalf
    single_threshold: float
    composed_recall_at_single_threshold: float
    fp_single_at_single_threshold: float
    fp_pair_at_single_threshold: float | None
    rows_per_ticket: float
    shape_fp: Mapping[str, float] = field(default_factory=dict)
    shape_overhead: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def validation_halves(rows: Sequence[TicketRow]) -> list[int]:
    """0 or 1 per row: accounts (tickets without one: each its own group) alternate between
    the halves in a fixed hashed order; a composed copy goes with its positive part (a routine
    pair with its first part) and a shape copy with its source, so no source is on both
    sides."""
    singles = [r for r in rows if is_single_slice(r.slice)]
    groups = sorted({r.account or f"id:{r.id}" for r in singles},
                    key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    half_of_group = {g: i % 2 for i, g in enumerate(groups)}
    half = {r.id: half_of_group[r.account or f"id:{r.id}"] for r in singles}
    gold = {r.id: r.gold for r in singles}
    for r in rows:  # composed rows, then (below) shape copies, whose source may be composed
        parts = parse_composed_id(r.id)
        if parts is not None:
            if parts[0] not in half or parts[1] not in half:
                raise ValueError(f"composed validation row without both parts: {r.id}")
            half[r.id] = half[parts[1] if r.gold == 1 and gold[parts[1]] == 1 else parts[0]]
    for r in rows:
        shaped = parse_shape_id(r.id)
        if shaped is not None:
            if shaped[2] not in half:
                raise ValueError(f"shape validation row without its source: {r.id}")
            half[r.id] = half[shaped[2]]
    missing = [r.id for r in rows if r.id not in half]
    if missing:
        raise ValueError(f"validation row of no half: {missing[0]}")
    return [half[r.id] for r in rows]


def _labelled(rows: Sequence[TicketRow], scores: np.ndarray, threshold: float
              ) -> list[Labelled]:
    return [Labelled(r.id, r.slice, r.gold, bool(s >= threshold)) for r, s in zip(rows, scores)]


def held_half(scores: np.ndarray, rows: Sequence[TicketRow], halves: Sequence[int],
              required: set[str], margin: float) -> HeldHalf:
    """Set the rule threshold on one half, count on the other, both ways."""
    missed = sources = 0
    fps: list[float] = []
    overheads: list[float] = []
    shape_overheads: list[float] = []
    for fit in (0, 1):
        idx = [i for i, h in enumerate(halves) if h == fit]
        held = [i for i, h in enumerate(halves) if h != fit]
        th = choose_threshold(scores[idx].tolist(), [rows[i].gold for i in idx],
                              [rows[i].slice for i in idx], required, margin)
        every = _labelled(rows, scores, th)
        labelled = [every[i] for i in held]
        evidence = source_evidence(labelled, required, every).overall
        missed, sources = missed + evidence.missed, sources + evidence.sources
        comp = composition(labelled)
        fps.append(comp.single_fp)
        if comp.overhead is not None:
            overheads.append(comp.overhead)
        worst_shape = _worst_shape_overhead(labelled)
        if worst_shape is not None:
            shape_overheads.append(worst_shape)
    return HeldHalf(missed, sources, float(np.mean(fps)),
                    float(np.mean(overheads)) if overheads else None,
                    float(np.mean(shape_overheads)) if shape_overheads else None)


def _worst_shape_overhead(labelled: Sequence[Labelled]) -> float | None:
    costs = shape_costs(labelled)
    return max(c.overhead for c in costs) if costs else None


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


def candidate_at(name: str, weight: float, scores: np.ndarray, rows: Sequence[TicketRow],
                 halves: Sequence[int], required: Sequence[str], margin: float,
                 rows_per_ticket: float) -> ScoringCandidate:
    """One candidate's figures on all of validation and on the held halves."""
    golds = [r.gold for r in rows]
    slices = [r.slice for r in rows]
    kinds = sorted({k for k in map(shape_kind, slices) if k is not None})
    required_all = required_fixture_slices(required, kinds)
    composed_required = {f"{PREFIX}{s}" for s in required}
    single = [i for i, r in enumerate(rows) if is_single_slice(r.slice)]
    th = choose_threshold(scores.tolist(), golds, slices, required_all, margin)
    single_th = choose_threshold(scores[single].tolist(), [golds[i] for i in single],
                                 [slices[i] for i in single], required, margin)
    labelled = _labelled(rows, scores, th)
    at_rule = composition(labelled)
    shapes = shape_costs(labelled)
    at_single = composition(_labelled(rows, scores, single_th))
    return ScoringCandidate(
        name, weight, th, at_rule.single_fp, at_rule.pair_fp, at_rule.overhead,
        held_half(scores, rows, halves, required_all, margin), single_th,
        _recall(scores, rows, single_th, composed_required), at_single.single_fp,
        at_single.pair_fp, rows_per_ticket, {c.kind: c.fp for c in shapes},
        max(c.overhead for c in shapes) if shapes else None)


def evaluate_candidates(logits_fn: Any, tokenizer: Any, spec: ScoreSpec,
                        segmentations: Sequence[SegmentPolicy], rows: Sequence[TicketRow],
                        prepared: Sequence[str], required: Sequence[str],
                        lexical: LexicalModel | None, weights: Sequence[float],
                        margin: float, workers: int = 1,
                        keep: Callable[[ScoredValidation], None] | None = None
                        ) -> list[ScoringCandidate]:
    """Every segmentation x encoder weight, scored on the validation inventory (`workers`
    tickets at once; the scores do not depend on it). `keep` receives each segmentation's
    segment scores, so the chosen one need not be scored again.

    With rows run alone (`per_row`), a row any segmentation already ran is not run again (the
    whole ticket is every segmentation's first segment); the logit range each `keep` receives
    is then the range over every validation row the model ran."""
    halves = validation_halves(rows)
    cache: dict[str, float] = {}
    recorder = LogitRecorder(logits_fn)
    shared = RowLogits()
    segment_scores: list[tuple[str, tuple[Scored, ...]]] = []

    def lex(texts: Sequence[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in cache})
        if todo and lexical is not None:
            cache.update(zip(todo, lexical.scores(todo).tolist()))
        return np.asarray([cache[t] for t in texts])

    out: list[ScoringCandidate] = []
    for seg in segmentations:
        seg_spec = replace(spec, policy=replace(spec.policy, segmentation=seg), blend=None)
        scored = score_texts(recorder, tokenizer, prepared, seg_spec, workers=workers,
                             rows=shared)
        segment_scores.append((seg.name, tuple(scored)))
        rows_per_ticket = float(np.mean([s.rows for s in scored]))
        for w in sorted({float(x) for x in (weights or (1.0,))}, reverse=True):
            scores = ticket_scores(scored, w, lex if lexical is not None else None, prepared)
            cand = candidate_at(seg.name, w, scores, rows, halves, required, margin,
                                rows_per_ticket)
            log.info("candidate %s w=%.2f: held halves missed %d of %d, single fp %.4f; all "
                     "validation: threshold %.4f single fp %.4f pairs %s overhead %s shape "
                     "overhead %s", cand.segmentation, w, cand.held.missed, cand.held.sources,
                     cand.held.fp_single, cand.threshold, cand.fp_single, cand.fp_pair,
                     cand.composition_overhead, cand.shape_overhead)
            out.append(cand)
    if keep is not None:
        for name, scored_segments in segment_scores:
            keep(ScoredValidation(name, scored_segments, recorder.range()))
    return out


@dataclass(frozen=True)
class Limits:
    """The receipt's limits a candidate should meet on all of validation."""

    fp_budget: float | None = None
    max_composition_overhead: float | None = None
    max_shape_overhead: float | None = None

    def met_by(self, c: ScoringCandidate) -> bool:
        return (_within(c.fp_single, self.fp_budget)
                and _within(c.composition_overhead, self.max_composition_overhead)
                and _within(c.shape_overhead, self.max_shape_overhead))


def _within(value: float | None, limit: float | None) -> bool:
    return limit is None or value is None or value <= limit


COST_TOLERANCE = 0.01  # a point of held-half single FP buys the cheaper segmentation


def best_candidate(candidates: Sequence[ScoringCandidate], limits: Limits = Limits()
                   ) -> ScoringCandidate:
    """Among candidates that meet the limits (all, when none does): the best held-half rank;
    then, within one point of its held single FP and with its misses, the fewest rows per
    ticket; ties: the rank, then more encoder weight."""
    pool = [c for c in candidates if limits.met_by(c)] or list(candidates)
    top = min(pool, key=lambda c: (c.held.key(), -c.encoder_weight))
    near = [c for c in pool if c.held.missed == top.held.missed
            and c.held.fp_single <= top.held.fp_single + COST_TOLERANCE]
    return min(near, key=lambda c: (c.rows_per_ticket, c.held.key(), -c.encoder_weight))
