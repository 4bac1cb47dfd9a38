"""What a receipt proves: the miss-rate bound, source counting, composition overhead, the
evidence and composition holds, and a choice of candidate that transfers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from intakegate.contract.dataset import TicketRow
from intakegate.errors import InputError
from intakegate.receipt.evidence import (Labelled, composition, miss_rate_bound,
                                         source_evidence)
from intakegate.receipt.gate import GateRow, ReceiptSpec, Run, release_decision, spec_from_json
from intakegate.train.selection import Limits, best_candidate, candidate_at, validation_halves
from intakegate.vocab import GateDecision, Route

IDENTITY = {"dataset_version": "d1", "label_version": "l1", "split_manifest_version": "s1",
            "model_version": "m1"}


@pytest.mark.parametrize(("missed", "sources", "expected"), [
    (0, 36, 0.0799), (0, 59, 0.0495), (0, 80, 0.0368), (1, 100, None), (3, 240, None)])
def test_the_bound_matches_known_clopper_pearson_values(missed: int, sources: int,
                                                        expected: float | None) -> None:
    from scipy.stats import beta

    bound = miss_rate_bound(missed, sources)
    assert bound == pytest.approx(beta.ppf(0.95, missed + 1, sources - missed), abs=1e-9)
    if expected is not None:
        assert bound == pytest.approx(expected, abs=1e-4)


def test_the_bound_of_no_evidence_or_all_missed_is_one() -> None:
    assert miss_rate_bound(5, 5) == 1.0
    with pytest.raises(ValueError):
        miss_rate_bound(3, 2)


def _pos(fid: str, slice_: str, flagged: bool) -> Labelled:
    return Labelled(fid, slice_, 1, flagged)


def test_a_source_counts_once_and_is_missed_when_any_copy_is() -> None:
    rows = [_pos("a", "theft", True), _pos("b", "theft", True), _pos("c", "fraud", True),
            Labelled("r1", "routine", 0, False), Labelled("r2", "routine", 0, False),
            # two copies of a: one caught, one missed; one copy of c, caught
            _pos("cmp|r1|a|space", "composed:theft", True),
            _pos("cmp|a|r2|bare", "composed:theft", False),
            _pos("cmp|c|r1|newline", "composed:fraud", True)]
    ev = source_evidence(rows, {"theft", "fraud", "composed:theft", "composed:fraud"})
    assert (ev.overall.sources, ev.overall.missed) == (3, 1)
    per = {s.slice: (s.sources, s.missed) for s in ev.slices}
    assert per == {"theft": (2, 1), "fraud": (1, 0)}
    assert ev.overall.line() == "1 of 3 missed: miss rate at most 86.5% at 95%"


def test_composition_overhead_is_what_pairs_add_beyond_their_parts() -> None:
    singles = [Labelled(f"r{i}", "routine", 0, i < 10) for i in range(100)]  # 10%
    pairs = [Labelled(f"cmp|r{i}|r{i + 1}|space", "composed:routine_pair", 0, i < 30)
             for i in range(99)]
    comp = composition([*singles, *pairs])
    assert comp.single_fp == pytest.approx(0.10)
    assert comp.explained == pytest.approx(0.19)
    assert comp.overhead == pytest.approx(30 / 99 - 0.19)


def _spec(ids: list[str], **kw: object) -> ReceiptSpec:
    return ReceiptSpec("r1", IDENTITY, tuple(ids), frozenset({"theft", "composed:theft"}),
                       **kw)  # type: ignore[arg-type]


def _tiny_receipt(pair_flags: int, positives: int = 60) -> tuple[list[str], Run]:
    """`positives` theft tickets (all caught), 20 routine singles (2 flagged: 10%) and 20
    routine pairs of which `pair_flags` are flagged."""
    rows = [GateRow(f"p{i}", "theft", 1, 0.9) for i in range(positives)]
    rows += [GateRow(f"r{i}", "routine", 0, 0.8 if i < 2 else 0.1) for i in range(20)]
    rows += [GateRow(f"cmp|r{i}|r{(i + 1) % 20}|space", "composed:routine_pair", 0,
                     0.8 if i < pair_flags else 0.1) for i in range(20)]
    rows += [GateRow("cmp|r3|p0|space", "composed:theft", 1, 0.9)]
    return [r.fixture_id for r in rows], Run("tiny", IDENTITY, 0.5, tuple(rows))


def test_max_composition_overhead_holds_pairs_over_it_and_passes_pairs_within() -> None:
    # single 10% explains 19% of pairs: 4/20 = 20% is +0.01, 10/20 = 50% is +0.31
    ids, within = _tiny_receipt(pair_flags=4)
    result = release_decision(_spec(ids, max_composition_overhead=0.05), within)
    assert result.decision is GateDecision.ELIGIBLE_FOR_SHADOW, result.reason
    assert result.details["composition"]["composition_overhead"] == pytest.approx(0.01)
    ids, over = _tiny_receipt(pair_flags=10)
    result = release_decision(_spec(ids, max_composition_overhead=0.05), over)
    assert result.decision is GateDecision.HOLD
    assert result.reason == "composition_fp:0.3100>0.0500"
    # without a maximum the overhead is reported, not gated
    assert release_decision(_spec(ids), over).eligible


def test_the_budget_counts_single_routine_tickets_not_pairs() -> None:
    ids, run = _tiny_receipt(pair_flags=10)  # single 10%, pairs 50%, mixed 30%
    result = release_decision(_spec(ids, fp_budget=0.12), run)
    assert result.eligible and result.false_positive_rate == pytest.approx(0.10)
    assert result.details["false_positive_rate_all"] == pytest.approx(12 / 40)


def test_too_few_sources_is_insufficient_evidence() -> None:
    ids, run = _tiny_receipt(pair_flags=0, positives=36)  # 0 of 36: bound 7.99%
    result = release_decision(_spec(ids, max_miss_rate_bound=0.05), run)
    assert result.decision is GateDecision.HOLD
    assert result.reason == "insufficient_evidence:0/36:0.0798>0.0500"
    assert result.evidence_line() == "0 of 36 missed: miss rate at most 8.0% at 95%"
    ids, run = _tiny_receipt(pair_flags=0, positives=59)  # 0 of 59: bound 4.95%
    assert release_decision(_spec(ids, max_miss_rate_bound=0.05), run).eligible


@pytest.mark.parametrize("bound", [0, 0.0, -0.1, 1.5, "0.05", True])
def test_a_miss_rate_bound_outside_zero_one_is_an_error_naming_the_field(bound: object) -> None:
    ids, _ = _tiny_receipt(pair_flags=0)
    spec = {**_spec(ids).to_json(), "max_miss_rate_bound": bound}
    with pytest.raises(InputError, match="max_miss_rate_bound"):
        spec_from_json(spec)


@pytest.mark.parametrize(("fixture_id", "named"), [
    ("cmp|ghost|p0|space", "ghost"),  # a part that is not in the inventory
    ("cmp|r3|space", "cmp|r3|space"),  # not a pair of two parts
])
def test_a_composed_id_without_both_parts_is_an_error_naming_it(
        tmp_path: Path, fixture_id: str, named: str) -> None:
    ids, run = _tiny_receipt(pair_flags=0)
    rows = [*run.rows, GateRow(fixture_id, "composed:theft", 1, 0.9)]
    bad = Run("tiny", IDENTITY, 0.5, tuple(rows))
    spec = _spec([*ids, fixture_id])
    with pytest.raises(InputError, match=named.replace("|", r"\|")):
        release_decision(spec, bad)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_json()))
    (tmp_path / "run.json").write_text(json.dumps(bad.to_json()))
    proc = subprocess.run([sys.executable, "-m", "intakegate.cli", "gate", "--receipt",
                           str(tmp_path / "spec.json"), str(tmp_path / "run.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and named in proc.stderr, proc.stderr


def _row(fid: str, gold: int, account: str) -> TicketRow:
    route = Route.HUMAN_REVIEW_NOW if gold else Route.GUARDED_AGENT
    return TicketRow(fid, fid, route, "theft" if gold else "routine", account=account)


def test_the_choice_takes_the_candidate_that_transfers_over_one_fitting_a_planted_positive(
        ) -> None:
    """`fits` scores every validation positive high, so its rule threshold is high and its
    routine FP on all of validation low; but its lowest positives sit in one half only, so a
    threshold set on the other half misses them. `transfers` has the same lowest positive in
    both halves. Ranked by FP on all of validation, `fits` would win; the rule takes
    `transfers`."""
    rows = [*(_row(f"p{i}", 1, f"a{i}") for i in range(40)),
            *(_row(f"r{i}", 0, f"b{i}") for i in range(200))]
    halves = validation_halves(rows)
    pos_half = [h for r, h in zip(rows, halves) if r.gold == 1]
    assert 10 <= sum(pos_half) <= 30  # accounts alternate between the halves
    rng = np.random.default_rng(0)
    negatives = rng.uniform(0.0, 0.9, 200)
    transfers = np.concatenate([np.where(np.arange(40) < 2, 0.6, 0.95), negatives])
    transfers[[i for i in range(40) if pos_half[i] == 1][:1]] = 0.6  # the same low in both
    transfers[[i for i in range(40) if pos_half[i] == 0][:1]] = 0.6
    fits = np.concatenate([np.full(40, 0.95), negatives])
    planted = [i for i in range(40) if pos_half[i] == 0][:3]
    fits[planted] = 0.8  # the lowest positives, all in one half
    a = candidate_at("transfers", 1.0, transfers, rows, halves, ["theft"], 0.0, 1.0)
    b = candidate_at("fits", 1.0, fits, rows, halves, ["theft"], 0.0, 1.0)
    assert b.fp_single < a.fp_single  # the old rule's pick
    assert (a.held.missed, b.held.missed) == (0, 3)
    assert best_candidate([b, a], Limits()).segmentation == "transfers"


def test_segment_cost_breaks_near_ties_within_one_point() -> None:
    rows = [*(_row(f"p{i}", 1, f"a{i}") for i in range(20)),
            *(_row(f"r{i}", 0, f"b{i}") for i in range(100))]
    halves = validation_halves(rows)
    scores = np.concatenate([np.full(20, 0.9), np.linspace(0.0, 0.95, 100)])
    cheaper = scores.copy()
    cheaper[20 + 99] = 0.1  # one routine ticket fewer to people in the costly one
    costly = candidate_at("costly", 1.0, cheaper, rows, halves, ["theft"], 0.0, 4.0)
    cheap = candidate_at("cheap", 1.0, scores, rows, halves, ["theft"], 0.0, 1.0)
    assert costly.held.fp_single < cheap.held.fp_single <= costly.held.fp_single + 0.01
    assert best_candidate([costly, cheap]).segmentation == "cheap"


def _shape_copy(row: TicketRow, kind: str = "chat") -> TicketRow:
    route = Route.HUMAN_REVIEW_NOW if row.gold else Route.GUARDED_AGENT
    sliced = f"shape:{kind}:{'theft' if row.gold else 'routine'}"
    return TicketRow(f"shp|{kind}|0|{row.id}", row.text, route, sliced, account=row.account)


def test_the_choice_counts_shape_copies_missed_and_their_overhead() -> None:
    """A shape copy is a fixture like any other: the threshold covers its positives, a missed
    copy misses its source on the held half, and routine copies that look riskier than their
    tickets add a shape overhead that ranks and limits candidates."""
    singles = [*(_row(f"p{i}", 1, f"a{i}") for i in range(20)),
               *(_row(f"r{i}", 0, f"b{i}") for i in range(100))]
    rows = [*singles, *(_shape_copy(r) for r in singles)]
    halves = validation_halves(rows)
    single_scores = np.concatenate([np.full(20, 0.9), np.linspace(0.0, 0.5, 100)])
    same = np.concatenate([single_scores, single_scores])
    riskier = same.copy()
    riskier[120 + 20:] = 0.95  # every routine chat copy scores above the threshold
    plain = candidate_at("plain", 1.0, same, rows, halves, ["theft"], 0.0, 1.0)
    loud = candidate_at("loud", 1.0, riskier, rows, halves, ["theft"], 0.0, 1.0)
    assert plain.shape_overhead == 0.0 and loud.shape_overhead == 1.0
    assert loud.held.shape_overhead == 1.0 and loud.held.key() > plain.held.key()
    assert best_candidate([loud, plain]).segmentation == "plain"
    assert not Limits(max_shape_overhead=0.05).met_by(loud)
    quiet = same.copy()
    quiet[120] = 0.1  # the chat copy of p0 scores below every routine ticket
    missed = candidate_at("missed", 1.0, quiet, rows, halves, ["theft"], 0.0, 1.0)
    assert missed.held.missed == 1 and missed.held.sources == 20
    assert missed.threshold == 0.1  # the rule threshold covers the shape positive
