"""A bundle whose score blends the encoder with its TF-IDF model: train, export and runtime all
score the same blended number, and the lexical part is as protected as the weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intakegate.bundle import Artifact, verify_bundle
from intakegate.bundle.paths import LEXICAL, LEXICAL_TERMS, LEXICAL_WEIGHTS
from intakegate.routing import Reason
from intakegate.runtime import Router
from intakegate.vocab import Route
from tests.conftest import train_tiny_bundle
from tests.runtime_helpers import copy_bundle, manifest, rewrite


@pytest.fixture(scope="module")
def blended(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-encoder bundle forced to blend (one candidate weight), with ONNX fp32 exported."""
    from intakegate.export.pipeline import export_bundle

    root = tmp_path_factory.mktemp("blend")
    bundle = train_tiny_bundle(root, "tiny-blend", blend_weights=(0.6,))
    export_bundle(bundle, [Artifact.ONNX_FP32])
    return bundle


def test_blend_is_recorded_and_hashed(blended: Path) -> None:
    m = manifest(blended)
    assert m["score_blend"]["encoder_weight"] == 0.6
    assert m["score_blend"]["lexical"] in {f["path"] for f in m["files"]}
    assert "+tfidf-" in m["model_version"]  # the receipt identity names the blend
    report = json.loads((blended / "docs" / "gate_report.json").read_text())
    assert report["score_blend"]["chosen_encoder_weight"] == 0.6
    selection = json.loads((blended / "docs" / "selection_report.json").read_text())
    tried = selection["shares"][0]["candidates"]
    assert {c["encoder_weight"] for c in tried} == {0.6}  # every candidate is on record
    test = json.loads((blended / "docs" / "test_report.json").read_text())
    assert "single" in test["components"]["shipped"]
    assert "composed" in test["components"]["shipped"]


def test_export_regate_and_router_use_the_blended_score(blended: Path) -> None:
    """The ONNX artifact re-passes the blended receipt; the router reproduces its scores."""
    m = manifest(blended)
    assert m["artifacts"]["onnx-fp32"]["status"] == "eligible_for_shadow"
    run = json.loads((blended / "receipt" / "runs" / "onnx-fp32.json").read_text())
    ref = json.loads((blended / "receipt" / "runs" / "torch-fp32.json").read_text())
    ref_scores = {r["fixture_id"]: r["score"] for r in ref["rows"]}
    assert max(abs(r["score"] - ref_scores[r["fixture_id"]]) for r in run["rows"]) < 1e-5
    router = Router.load(blended, artifact="onnx-fp32")
    assert router.ready, router.health()
    from intakegate.contract.dataset import load_dataset

    rows = {r.id: r for r in load_dataset("refund-intake").rows}
    for r in run["rows"][:20]:
        d = router.route(rows[r["fixture_id"]].text)
        assert d.score == pytest.approx(r["score"], abs=1e-5)


def test_tampered_lexical_model_refuses_the_bundle(blended: Path, tmp_path: Path) -> None:
    copy = copy_bundle(blended, tmp_path, "tampered")
    doc = json.loads((copy / "lexical.json").read_text())
    doc["intercept"] += 5.0
    (copy / "lexical.json").write_text(json.dumps(doc))
    router = Router.load(copy, artifact="onnx-fp32")
    assert not router.ready
    d = router.route("Where is my package?")
    assert d.route is Route.HUMAN_REVIEW_NOW and d.reason is Reason.BUNDLE_INTEGRITY
    assert "lexical.json" in d.detail


def test_a_bundle_that_drops_its_blend_fails_the_self_test(blended: Path, tmp_path: Path) -> None:
    """Removing score_blend (hashes recomputed) changes every score: the golden rows catch it."""
    copy = copy_bundle(blended, tmp_path, "unblended")
    rewrite(copy, lambda m: m.pop("score_blend"))
    verify_bundle(copy)  # a consistent bundle, yet not the one that was gated
    router = Router.load(copy, artifact="onnx-fp32")
    assert not router.ready
    assert "selftest_mismatch" in router.health()["detail"]


def test_lexical_model_is_stored_without_json_arrays_and_packs_whole(blended: Path,
                                                                      tmp_path: Path) -> None:
    """The blend's idf and coefficients are a float64 .npy and its terms a text file, each
    hashed in the manifest and named by the header; a slim pack carries all three and routes."""
    from intakegate.bundle.pack import pack_bundle

    m = manifest(blended)
    listed = {f["path"] for f in m["files"]}
    assert {LEXICAL, LEXICAL_TERMS, LEXICAL_WEIGHTS} <= listed
    assert json.loads((blended / LEXICAL).read_text())["format"] == "intakegate-lexical-v2"
    pack = tmp_path / "pack"
    pack_bundle(blended, Artifact.ONNX_FP32, pack)
    assert all((pack / rel).is_file() for rel in (LEXICAL, LEXICAL_TERMS, LEXICAL_WEIGHTS))
    served, packed = Router.load(blended, artifact="onnx-fp32"), Router.load(pack,
                                                                             artifact="onnx-fp32")
    assert packed.ready, packed.health()
    text = "Where is my package? Someone used my card and I never made these payments."
    assert packed.route(text).score == served.route(text).score


def test_lexical_weights_of_another_model_refuse_the_bundle_even_when_relisted(
        blended: Path, tmp_path: Path) -> None:
    """Weights swapped for other ones and the manifest re-listed to match (a consistent bundle):
    the lexical header's digest of its parts catches it, and tickets go to a person."""
    copy = copy_bundle(blended, tmp_path, "swapped-weights")
    weights = np.load(copy / LEXICAL_WEIGHTS, allow_pickle=False)
    weights[1] *= -1.0
    np.save(copy / LEXICAL_WEIGHTS, weights, allow_pickle=False)
    rewrite(copy, lambda m: None)
    verify_bundle(copy)
    router = Router.load(copy, artifact="onnx-fp32")
    d = router.route("Someone used my card and I never made these payments.")
    assert d.route is Route.HUMAN_REVIEW_NOW and d.reason is Reason.BUNDLE_INTEGRITY
    assert "weights.sha256" in d.detail
