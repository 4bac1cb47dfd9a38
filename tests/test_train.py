"""Train stage: threshold rule, fp-budget hold, repeatability, bundle round trip, rollback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from intakegate.bundle import (
    BundleError,
    activate,
    list_bundles,
    parse_pointer,
    resolve_bundle,
    rollback,
    verify_bundle,
)
from intakegate.receipt.composed import parse_composed_id
from intakegate.receipt.gate import load_run, load_spec, release_decision
from intakegate.receipt.threshold import choose_threshold
from tests.conftest import relaxed_guide, train_tiny_bundle
from tests.runtime_helpers import validation_rows

EXPECTED_DOCS = {"label_guide.md", "data_card.md", "baseline_report.md", "baseline_report.json",
                 "training_config.json", "test_report.md", "test_report.json",
                 "shadow_monitor_plan.md", "threshold_sweep.csv", "threshold_sweep.png",
                 "reliability.png", "gate_report.json"}


def test_threshold_is_the_lowest_required_positive_score() -> None:
    scores = [0.9, 0.42, 0.64, 0.71, 0.2, 0.05]
    golds = [1, 1, 1, 0, 0, 1]
    slices = ["a", "b", "a", "r", "r", "not_required"]
    # The non-required positive at 0.05 does not drag the threshold down.
    assert choose_threshold(scores, golds, slices, {"a", "b"}) == 0.42
    with pytest.raises(ValueError):
        choose_threshold(scores, golds, slices, {"zzz"})


def test_threshold_margin_is_applied_in_log_odds() -> None:
    scores, golds, slices = [0.9, 0.42, 0.2], [1, 1, 0], ["a", "a", "r"]
    lowered = choose_threshold(scores, golds, slices, {"a"}, margin_logit=0.25)
    logit = np.log(0.42 / 0.58)
    assert lowered == pytest.approx(1 / (1 + np.exp(-(logit - 0.25))))
    assert 0.36 < lowered < 0.42
    tiny = choose_threshold([1e-6, 0.9], [1, 0], ["a", "r"], {"a"}, margin_logit=0.25)
    assert 0 < tiny < 1e-6  # relative, so it still works for scores near zero


def test_tiny_bundle_round_trip(tiny_bundle: Path) -> None:
    verified = verify_bundle(tiny_bundle)
    m = verified.manifest.to_json()
    for key in ("bundle_version", "label_version", "validation_receipt_version",
                "split_manifest_version", "tokenizer_version", "model_version",
                "input_policy_version", "threshold", "fallback_route", "downstream_consumer"):
        assert m[key] not in (None, "")
    assert m["max_length"] == 256 and m["fallback_route"] == "human_review_now"
    assert EXPECTED_DOCS <= {Path(p).name for p in m["documents"].values()}
    # The receipt and the saved evaluation rows re-gate to the manifest's decision.
    spec = load_spec(tiny_bundle / m["receipt"])
    run = load_run(tiny_bundle / m["artifacts"]["torch-fp32"]["receipt_run"])
    result = release_decision(spec, run)
    assert result.decision.value == m["decision"] and result.reason == m["decision_reason"]
    assert run.threshold == m["threshold"]
    gate_report = json.loads((tiny_bundle / "docs/gate_report.json").read_text())
    assert gate_report["lowest_required_positive_score"] > m["threshold"]
    # The receipt's inventory is exactly the validation split of the split manifest ...
    split = json.loads((tiny_bundle / "split_manifest.json").read_text())
    singles = sorted(f for f in spec.fixture_ids if parse_composed_id(f) is None)
    assert singles == split["splits"]["validation"]["ids"]
    # ... plus the composed fixtures its recorded recipe generates from them, nothing else.
    assert spec.composed is not None
    composed = {r.id for r in validation_rows(tiny_bundle)[len(singles):]}
    assert set(spec.fixture_ids) - set(singles) == composed and composed
    assert spec.identity["split_manifest_version"] == split["split_manifest_version"]


def test_training_is_repeatable(tiny_bundle: Path, tmp_path: Path) -> None:
    again = train_tiny_bundle(tmp_path, "tiny-again")
    a = load_run(tiny_bundle / "receipt/runs/torch-fp32.json")
    b = load_run(again / "receipt/runs/torch-fp32.json")
    assert [r.fixture_id for r in a.rows] == [r.fixture_id for r in b.rows]
    assert np.allclose([r.score for r in a.rows], [r.score for r in b.rows], atol=1e-6, rtol=0)


def test_over_fp_budget_bundle_is_written_and_held(tmp_path: Path) -> None:
    held = train_tiny_bundle(tmp_path, "tiny-strict", label_guide=relaxed_guide(tmp_path, 0.0))
    m = verify_bundle(held).manifest.to_json()
    assert m["decision"] == "hold" and m["decision_reason"].startswith("fp_budget:")
    assert m["artifacts"]["torch-fp32"]["status"] == "hold"
    with pytest.raises(BundleError, match="held"):
        activate(tmp_path, "refund-intake", "tiny-strict")


def test_activate_and_rollback_restore_the_whole_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    (root / "refund-intake").mkdir(parents=True)
    v1 = root / "refund-intake" / "v1"
    shutil.copytree(tiny_bundle, v1)
    v2 = train_tiny_bundle(root, "v2", seed=99, tiny_vocab_size=600)
    m1, m2 = (json.loads((p / "manifest.json").read_text()) for p in (v1, v2))
    assert m1["threshold"] != m2["threshold"] and m1["tokenizer_version"] != m2["tokenizer_version"]

    activate(root, "refund-intake", "v1")
    activate(root, "refund-intake", "v2")
    assert resolve_bundle("refund-intake", root).path == v2
    pointer = rollback(root, "refund-intake")
    assert pointer.bundle_version == "v1" and pointer.rolled_back_from == "v2"
    active = verify_bundle(resolve_bundle("refund-intake", root).path)
    assert active.threshold == m1["threshold"]
    assert active.manifest.to_json()["tokenizer_version"] == m1["tokenizer_version"]
    assert active.read("tokenizer.json") == (v1 / "tokenizer.json").read_bytes()
    assert [b["bundle_version"] for b in list_bundles(root) if b["active"]] == ["v1"]
    with pytest.raises(BundleError, match="no earlier bundle"):
        rollback(root, "refund-intake")
    assert parse_pointer(root, "refund-intake").bundle_version == "v1"


def test_hugging_face_path_trains_a_tiny_bert(tiny_bert_bundle: Path) -> None:
    m = verify_bundle(tiny_bert_bundle).manifest.to_json()
    assert m["model_kind"] == "hf-sequence-classification"
    cfg = json.loads((tiny_bert_bundle / "model/torch-fp32/config.json").read_text())
    assert cfg["id2label"] == {"0": "guarded_agent", "1": "human_review_now"}
    training = json.loads((tiny_bert_bundle / "docs/training_config.json").read_text())
    assert training["base_model_sha256"] and training["libraries"]["torch"]


def test_intent_objective_derives_the_route_from_slices(tmp_path: Path) -> None:
    bundle = train_tiny_bundle(tmp_path, "tiny-intents", objective="intents")
    m = verify_bundle(bundle).manifest.to_json()
    labels, positive = m["score_head"]["labels"], m["score_head"]["positive"]
    assert len(labels) == 7
    assert sorted(labels[i] for i in positive) == ["account_takeover",
                                                    "damaged_package_exception",
                                                    "return_window_exception"]
    run = load_run(bundle / "receipt/runs/torch-fp32.json")
    assert all(0.0 <= r.score <= 1.0 for r in run.rows)


def test_validation_only_keeps_the_test_split_closed(tmp_path: Path) -> None:
    from intakegate.train.pipeline import train_bundle

    result = train_bundle("refund-intake", bundles_root=tmp_path, bundle_version="cand",
                          reports_root=None, overrides={"base_model": "tiny"}, open_test=False)
    report = json.loads((result.bundle_dir / "docs/test_report.json").read_text())
    assert report["opened"] is False and "encoder" not in report
    assert not (result.bundle_dir / "docs/test_report.md").exists()
