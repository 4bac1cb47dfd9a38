"""The exact-receipt gate: the seed's six decisions, exit codes, and holds for bad scores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from intakegate.receipt.gate import GateRow, ReceiptSpec, Run, load_run, load_spec, release_decision
from intakegate.vocab import GateDecision
from tests.conftest import SEED

SEED_LINES = """\
intake_bundle_v1: decision=hold reason=missed:return_window_exception
intake_bundle_v2: decision=eligible_for_shadow reason=exact_receipt_pass
intake_bundle_incomplete: decision=hold reason=missing:account_takeover
intake_bundle_padded: decision=hold reason=unexpected:easy_status_extra
intake_bundle_duplicated: decision=hold reason=duplicate:return_policy_question
intake_bundle_drifted: decision=hold reason=dataset_version:refund-intake-validation-v2
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "intakegate.cli", *args], capture_output=True,
                          text=True)


def test_cli_reproduces_the_seed_six_lines_exactly(seed_run_paths: list[Path]) -> None:
    proc = cli("gate", "--receipt", str(SEED / "receipt.json"), *map(str, seed_run_paths))
    assert proc.stdout == SEED_LINES
    assert proc.returncode == 1  # some runs are held


def test_cli_exits_zero_only_when_every_run_is_eligible(seed_run_paths: list[Path]) -> None:
    proc = cli("gate", "--receipt", str(SEED / "receipt.json"), str(seed_run_paths[1]))
    assert proc.returncode == 0
    assert proc.stdout.strip().endswith("reason=exact_receipt_pass")


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("threshold"), "threshold"),
    (lambda r: r.update(model_version=7), "model_version"),
    (lambda r: r["rows"][0].update(gold=2), "rows[0].gold"),
    (lambda r: r["rows"][2].update(score="high"), "rows[2].score"),
    (lambda r: r["rows"][1].pop("slice"), "rows[1].slice"),
    (lambda r: r.update(extra=1), "extra"),
])
def test_malformed_run_exits_2_naming_file_and_field(tmp_path: Path, mutate, field) -> None:
    run = json.loads((SEED / "runs" / "intake_bundle_v2.json").read_text())
    mutate(run)
    path = tmp_path / "broken_run.json"
    path.write_text(json.dumps(run))
    proc = cli("gate", "--receipt", str(SEED / "receipt.json"), str(path))
    assert proc.returncode == 2
    assert "broken_run.json" in proc.stderr and f"'{field}'" in proc.stderr


def test_unreadable_spec_exits_2(tmp_path: Path, seed_run_paths: list[Path]) -> None:
    bad = tmp_path / "spec.json"
    bad.write_text('{"receipt_version": "x", "receipt_version": "y"}')
    proc = cli("gate", "--receipt", str(bad), str(seed_run_paths[0]))
    assert proc.returncode == 2 and "duplicate key" in proc.stderr and "spec.json" in proc.stderr


@pytest.fixture()
def spec() -> ReceiptSpec:
    return load_spec(SEED / "receipt.json")


@pytest.fixture()
def v2() -> Run:
    return load_run(SEED / "runs" / "intake_bundle_v2.json")


def _with_score(run: Run, fixture_id: str, score: float | None) -> Run:
    rows = tuple(GateRow(r.fixture_id, r.slice, r.gold, score) if r.fixture_id == fixture_id
                 else r for r in run.rows)
    return Run(run.bundle_version, run.identity, run.threshold, rows)


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf, 1.5, -0.1, None])
def test_invalid_score_is_a_hold_never_a_pass(spec: ReceiptSpec, v2: Run, score) -> None:
    # Even on a routine row, where a high score would not be a miss, the run is held.
    result = release_decision(spec, _with_score(v2, "routine_delivery_status", score))
    assert result.decision is GateDecision.HOLD
    assert result.reason == "invalid_score:routine_delivery_status"


def test_nan_in_a_run_file_is_parsed_and_held(tmp_path: Path, spec: ReceiptSpec) -> None:
    text = (SEED / "runs" / "intake_bundle_v2.json").read_text().replace("0.89", "NaN")
    path = tmp_path / "nan_run.json"
    path.write_text(text)
    assert release_decision(spec, load_run(path)).reason == "invalid_score:damaged_package_exception"


def test_fp_budget_holds_when_too_many_routine_tickets_go_to_people(spec: ReceiptSpec,
                                                                      v2: Run) -> None:
    # v2 sends 1 of 3 routine tickets to people (0.333).
    tight = ReceiptSpec(spec.receipt_version, spec.identity, spec.fixture_ids,
                        spec.required_slices, fp_budget=0.30)
    loose = ReceiptSpec(spec.receipt_version, spec.identity, spec.fixture_ids,
                        spec.required_slices, fp_budget=0.34)
    assert release_decision(tight, v2).reason == "fp_budget:0.3333>0.3000"
    assert release_decision(loose, v2).eligible


def test_score_equal_to_threshold_escalates(spec: ReceiptSpec, v2: Run) -> None:
    at = Run(v2.bundle_version, v2.identity, 0.42, v2.rows)  # return_window_exception scores 0.42
    assert release_decision(spec, at).eligible
    above = Run(v2.bundle_version, v2.identity, 0.4200001, v2.rows)
    assert release_decision(spec, above).reason == "missed:return_window_exception"


def test_identity_checked_before_inventory(spec: ReceiptSpec, v2: Run) -> None:
    drifted = Run(v2.bundle_version, {**v2.identity, "model_version": "encoder_v2"}, v2.threshold,
                  v2.rows[:2])
    assert release_decision(spec, drifted).reason == "model_version:encoder_v2"


def test_practice_raising_threshold_to_050_blocks_return_window(spec: ReceiptSpec,
                                                                 v2: Run) -> None:
    raised = Run(v2.bundle_version, v2.identity, 0.50, v2.rows)
    assert release_decision(spec, raised).reason == "missed:return_window_exception"


def test_golden_rows_are_short_singles_and_two_short_composed_spread_over_scores() -> None:
    """Every router load scores the golden rows: they keep both scoring paths (single and
    composed tickets) but come from the shortest quarter of each kind, spread over the
    scores."""
    from intakegate.receipt.composed import composed_id
    from intakegate.receipt.golden import pick_golden_ids

    texts = {f"s{i:02d}": "x" * (10 + i) for i in range(20)}
    scores = {fid: i / 20 for i, fid in enumerate(texts)}
    for i in range(10):
        fid = composed_id(f"s{i:02d}", f"s{i + 1:02d}", "space")
        texts[fid], scores[fid] = "y" * (100 + 50 * i), i / 10
    picked = pick_golden_ids(scores, texts)
    composed = [f for f in picked if f.startswith("cmp|")]
    single = [f for f in picked if not f.startswith("cmp|")]
    assert len(picked) == 8 and len(composed) == 2 and len(single) == 6
    # 6 singles from 20: the quarter (5) is too few, so the 6 shortest; 2 composed of the
    # shortest quarter (3 of 10).
    assert sorted(single) == [f"s{i:02d}" for i in range(6)]
    assert all(len(texts[f]) <= 200 for f in composed)
    many = {f"m{i:03d}": "z" * (10 + i) for i in range(100)}
    picked_many = pick_golden_ids({f: i / 100 for i, f in enumerate(many)}, many)
    assert len(picked_many) == 8 and all(len(many[f]) < 35 for f in picked_many)
    assert picked_many[0] == "m000" and picked_many[-1] == "m024"  # spread over the quarter
    assert picked == pick_golden_ids(dict(reversed(scores.items())), texts)
    only_single = {f: s for f, s in scores.items() if not f.startswith("cmp|")}
    assert len(pick_golden_ids(only_single, texts)) == 8


@pytest.mark.parametrize("row, error", [
    ({"fixture_id": "a", "slice": "s", "gold": True, "score": 0.5}, "rows[1].gold"),
    ({"fixture_id": "a", "slice": "s", "gold": 2, "score": 0.5}, "rows[1].gold"),
    ({"fixture_id": "a", "slice": "s", "gold": 1, "score": False}, "rows[1].score"),
    ({"fixture_id": "a", "slice": "s", "gold": 1, "score": "0.5"}, "rows[1].score"),
    ({"fixture_id": 7, "slice": "s", "gold": 1, "score": 0.5}, "rows[1].fixture_id"),
    ({"fixture_id": "a", "slice": "s", "gold": 1}, "rows[1].score"),
    ({"fixture_id": "a", "slice": "s", "gold": 1, "score": 0.5, "note": "x"}, "rows[1].note"),
    (["a", "s", 1, 0.5], "rows[1]"),
])
def test_a_run_row_that_is_not_exactly_well_formed_is_named(row: object, error: str) -> None:
    """Well-formed rows take a fast path at load; any other row still gets its field named."""
    from intakegate.errors import InputError
    from intakegate.receipt.gate import run_from_json

    good = {"fixture_id": "ok", "slice": "s", "gold": 0, "score": 1}
    run = {"bundle_version": "b", "threshold": 0.5, "rows": [good, row],
           "dataset_version": "d", "label_version": "l", "model_version": "m",
           "split_manifest_version": "v"}
    with pytest.raises(InputError) as caught:
        run_from_json(run)
    assert error in str(caught.value)
    parsed = run_from_json({**run, "rows": [good]})
    assert parsed.rows == (GateRow("ok", "s", 0, 1.0),) and type(parsed.rows[0].score) is float
