"""The cheap baselines a transformer has to beat: the seed's keyword rule and TF-IDF + LR."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from intakegate.contract.dataset import TicketRow
from intakegate.extras import require

# The seed's rule, extended per dataset in its dataset.json ("baseline_keywords").
SEED_KEYWORDS: tuple[str, ...] = ("arrived cracked", "can't sign in", "seller exception")


@dataclass(frozen=True)
class KeywordRule:
    """Score 1.0 when any term occurs in the lowercased text, else 0.0."""

    terms: tuple[str, ...] = SEED_KEYWORDS
    name: str = "keyword_rule"

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        lowered = [t.lower() for t in texts]
        return np.array([1.0 if any(term in t for term in self.terms) else 0.0 for t in lowered])


class TfidfLogReg:
    """Word 1-2 gram TF-IDF with logistic regression, fitted on train rows only."""

    name = "tfidf_logreg"

    def __init__(self, seed: int = 0) -> None:
        sk_text = require("sklearn.feature_extraction.text", "train")
        sk_linear = require("sklearn.linear_model", "train")
        self.vectorizer = sk_text.TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                                  lowercase=True)
        self.model = sk_linear.LogisticRegression(max_iter=2000, C=10.0,
                                                  class_weight="balanced", random_state=seed)

    def fit(self, rows: Sequence[TicketRow]) -> TfidfLogReg:
        return self.fit_texts([r.text for r in rows], [r.gold for r in rows])

    def fit_texts(self, texts: Sequence[str], golds: Sequence[int]) -> TfidfLogReg:
        x = self.vectorizer.fit_transform(list(texts))
        self.model.fit(x, np.asarray(golds))
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(self.vectorizer.transform(list(texts)))[:, 1]
