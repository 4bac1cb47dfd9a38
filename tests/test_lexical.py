"""The lexical model and the score blend: parity with scikit-learn, the blend rule, selection
on validation only, and a bundle whose blend is tampered with or malformed fails closed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from intakegate.bundle import BundleError, ScoreBlendEntry, sha256_bytes
from intakegate.bundle.paths import LEXICAL, LEXICAL_TERMS, LEXICAL_WEIGHTS
from intakegate.scoring.lexical import (
    LEXICAL_FORMAT_V1,
    LexicalFormatError,
    LexicalModel,
    ScoreBlend,
    blend_from_entry,
    blend_scores,
)

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


def v1_document(lexical: LexicalModel) -> dict:
    """The format v1 document earlier bundles hold: everything in one JSON object."""
    return {"format": LEXICAL_FORMAT_V1, **lexical.settings_json(), "terms": list(lexical.terms),
            "idf": lexical.idf.tolist(), "coef": lexical.coef.tolist()}


def test_stored_model_round_trip_is_exact_in_both_formats() -> None:
    """v2 (header + terms text + float64 .npy) and the v1 JSON earlier bundles carry both give
    the fitted model's scores to the bit."""
    _, lexical = fitted()
    files = lexical.to_files()
    assert set(files) == {LEXICAL, LEXICAL_TERMS, LEXICAL_WEIGHTS}
    assert files[LEXICAL_WEIGHTS][:6] == b"\x93NUMPY"  # not a pickle, not a zip
    again = LexicalModel.read(LEXICAL, files.__getitem__)
    assert np.array_equal(again.scores(TEXTS), lexical.scores(TEXTS))
    assert LexicalModel.files(LEXICAL, files.__getitem__) == (LEXICAL, LEXICAL_TERMS,
                                                              LEXICAL_WEIGHTS)
    old = {LEXICAL: json.dumps(v1_document(lexical)).encode()}
    assert np.array_equal(LexicalModel.read(LEXICAL, old.__getitem__).scores(TEXTS),
                          lexical.scores(TEXTS))
    assert LexicalModel.files(LEXICAL, old.__getitem__) == (LEXICAL,)


def test_malformed_lexical_names_the_field() -> None:
    _, lexical = fitted()
    doc = v1_document(lexical)
    doc["coef"] = doc["coef"][:-1]
    with pytest.raises(LexicalFormatError, match="terms but idf"):
        LexicalModel.from_json(doc)
    with pytest.raises(LexicalFormatError, match="format"):
        LexicalModel.from_json({**v1_document(lexical), "format": "other"})


def _with_header(files: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    header = json.loads(files[LEXICAL])
    header.update(changes)
    return {**files, LEXICAL: json.dumps(header).encode()}


def test_a_stored_part_that_is_not_what_its_header_names_is_refused() -> None:
    """Parts from another model (a manifest re-listed to match is not enough: the header's
    digests bind them), a pickled object array in the .npy, a term count that does not match,
    and a part path that leaves the bundle: each is refused, naming the file or field."""
    _, lexical = fitted()
    files = lexical.to_files()
    other = LexicalModel(lexical.terms, lexical.idf, -lexical.coef, lexical.intercept)
    swapped = {**files, LEXICAL_WEIGHTS: other.to_files()[LEXICAL_WEIGHTS]}
    with pytest.raises(LexicalFormatError, match="weights.sha256"):
        LexicalModel.read(LEXICAL, swapped.__getitem__)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    pickled = buffer.getvalue()
    weights = dict(json.loads(files[LEXICAL])["weights"], sha256=sha256_bytes(pickled))
    with pytest.raises(LexicalFormatError, match="allow_pickle"):
        LexicalModel.read(LEXICAL, _with_header({**files, LEXICAL_WEIGHTS: pickled},
                                                weights=weights).__getitem__)
    with pytest.raises(LexicalFormatError, match="terms declared"):
        LexicalModel.read(LEXICAL, _with_header(files, n_terms=len(lexical.terms) + 1)
                          .__getitem__)
    terms = dict(json.loads(files[LEXICAL])["terms"], path="../terms.txt")
    for read in (LexicalModel.read, LexicalModel.files):
        with pytest.raises(LexicalFormatError, match="terms"):
            read(LEXICAL, _with_header(files, terms=terms).__getitem__)
    with pytest.raises(LexicalFormatError, match="format"):
        LexicalModel.read(LEXICAL, _with_header(files, format="intakegate-lexical-v9")
                          .__getitem__)
    with pytest.raises(LexicalFormatError, match="not JSON"):
        LexicalModel.read(LEXICAL, {LEXICAL: b"\x80\x04junk"}.__getitem__)


def test_blend_is_a_weighted_mean_in_log_odds() -> None:
    out = blend_scores(np.array([0.5, 0.9, np.nan, 0.0]), np.array([0.5, 0.1, 0.5, 1.0]), 0.5)
    assert out[0] == pytest.approx(0.5) and out[1] == pytest.approx(0.5)
    assert np.isnan(out[2])  # an invalid encoder score stays invalid (the gate holds it)
    assert np.isfinite(out[3])  # exact 0 and 1 do not make NaN
    with pytest.raises(LexicalFormatError):
        ScoreBlend(fitted()[1], 1.0)


def test_manifest_blend_reads_verified_bytes() -> None:
    _, lexical = fitted()
    files = lexical.to_files()
    entry = ScoreBlendEntry.parse({"lexical": LEXICAL, "encoder_weight": 0.6},
                                  "manifest.json")
    blend = blend_from_entry(entry, files.__getitem__)
    assert blend is not None and blend.encoder_weight == 0.6
    assert blend_from_entry(None, files.__getitem__) is None
    with pytest.raises(BundleError, match="encoder_weight"):
        ScoreBlendEntry.parse({"lexical": "lexical.json"}, "manifest.json")
