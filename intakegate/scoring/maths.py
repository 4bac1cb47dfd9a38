"""Score maths shared by serving and training: stable softmax, the route score, valid scores.

Pure numpy. Outputs are called scores, never probabilities: calibration is measured in
`intakegate.receipt.threshold`, not assumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def stable_softmax(logits: np.ndarray | Sequence[float]) -> np.ndarray:
    """Softmax over the last axis after subtracting the row maximum (no overflow)."""
    arr = np.asarray(logits, dtype=np.float64)
    shifted = arr - arr.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def human_review_score(logits: np.ndarray | Sequence[float],
                       positive: Sequence[int] = (1,)) -> np.ndarray:
    """The human_review_now score: softmax mass on the positive labels.

    Two-class heads use label 1. An intent head (one label per slice) sums the softmax over the
    slices that route to a person, so the route score is derived from the intents.
    """
    probs = stable_softmax(logits)
    return probs[..., list(positive)].sum(axis=-1)


def valid_score(score: object) -> bool:
    """A score is usable only when it is a finite number in [0, 1]."""
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return False
    return math.isfinite(score) and 0.0 <= float(score) <= 1.0
