"""The lexical model and the score blend: parity with scikit-learn, the blend rule, selection
on validation only, and a bundle whose blend is tampered with or malformed fails closed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from intakegate.bundle import BundleError, ScoreBlendEntry
from intakegate.lexical import (LexicalFormatError, LexicalModel, ScoreBlend, blend_from_entry,
                                blend_scores)

TEXTS = ["I lost my card yesterday", "Where is my card? It has not arrived",
         "Someone used my card, I don't recognise this payment", "How do I top up by card?",
         "My card was stolen at the station", "Can I change my PIN at an ATM?",
         "There is a payment I didn't make", "What is the exchange rate for euros?"]
GOLDS = [1, 0, 1, 0, 1, 0, 1, 0]


def fitted() -> tuple[object, LexicalModel]:
    from intakegate.train.baselines import TfidfLogReg

    model = TfidfLogReg(0).fit_texts(TEXTS, GOLDS)
    return model, LexicalModel.from_sklearn(model.vectorizer, model.model)


def test_numpy_scores_match_scikit_learn() -> None:
    """The runtime scores without scikit-learn; its numbers must be scikit-learn's."""
    model, lexical = fitted()
    probe = [*TEXTS, "STOLEN card!!  stolen", "", "ünïcode çard lost", "nothing known here zz"]
    np.testing.assert_allclose(lexical.scores(probe), model.scores(probe), atol=1e-12)


def test_json_round_trip_is_exact() -> None:
    _, lexical = fitted()
    again = LexicalModel.from_json(json.loads(json.dumps(lexical.to_json())))
    assert np.array_equal(again.scores(TEXTS), lexical.scores(TEXTS))


def test_malformed_lexical_names_the_field() -> None:
    _, lexical = fitted()
    doc = lexical.to_json()
    doc["coef"] = doc["coef"][:-1]
    with pytest.raises(LexicalFormatError, match="terms but idf"):
        LexicalModel.from_json(doc)
    with pytest.raises(LexicalFormatError, match="format"):
        LexicalModel.from_json({**lexical.to_json(), "format": "other"})


def test_blend_is_a_weighted_mean_in_log_odds() -> None:
    out = blend_scores(np.array([0.5, 0.9, np.nan, 0.0]), np.array([0.5, 0.1, 0.5, 1.0]), 0.5)
    assert out[0] == pytest.approx(0.5) and out[1] == pytest.approx(0.5)
    assert np.isnan(out[2])  # an invalid encoder score stays invalid (the gate holds it)
    assert np.isfinite(out[3])  # exact 0 and 1 do not make NaN
    with pytest.raises(LexicalFormatError):
        ScoreBlend(fitted()[1], 1.0)


def test_manifest_blend_reads_verified_bytes() -> None:
    _, lexical = fitted()
    files = {"lexical.json": json.dumps(lexical.to_json()).encode()}
    entry = ScoreBlendEntry.parse({"lexical": "lexical.json", "encoder_weight": 0.6},
                                  "manifest.json")
    blend = blend_from_entry(entry, files.__getitem__)
    assert blend is not None and blend.encoder_weight == 0.6
    assert blend_from_entry(None, files.__getitem__) is None
    with pytest.raises(BundleError, match="encoder_weight"):
        ScoreBlendEntry.parse({"lexical": "lexical.json"}, "manifest.json")
