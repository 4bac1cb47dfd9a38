"""The two cheap baselines on the same tickets, for scale: what a model costs over a rule.

The keyword rule and TF-IDF + logistic regression (fitted on the bundle dataset's train split)
score raw text; they have no router around them, so their numbers are a floor for what any
routing call can cost, not a like-for-like comparison.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from intakegate.benchmarks.inputs import BenchTexts
from intakegate.benchmarks.latency import WarmSettings, timed_batches, timed_singles
from intakegate.benchmarks.stats import summarize_ms

log = logging.getLogger("intakegate.benchmarks")
NAMES = ("keyword_rule", "tfidf_logreg")


def _time_model(name: str, scores: Any, texts: Sequence[str], settings: WarmSettings
                ) -> dict[str, Any]:
    return {"measured": True,
            "latency": summarize_ms(timed_singles(name, lambda t: scores([t]), texts, settings)),
            "throughput": timed_batches(name, scores, texts, settings)}


def measure_baselines(texts: BenchTexts, settings: WarmSettings) -> dict[str, Any]:
    """Latency and throughput of both baselines (a missing `train` extra skips TF-IDF)."""
    from intakegate.train.baselines import KeywordRule

    rule = KeywordRule(texts.baseline_keywords or KeywordRule().terms)
    out: dict[str, Any] = {"keyword_rule": _time_model("keyword_rule", rule.scores, texts.test,
                                                       settings)}
    try:
        from intakegate.train.baselines import TfidfLogReg

        tfidf = TfidfLogReg(seed=0)
    except Exception as exc:  # noqa: BLE001 - MissingExtraError (no scikit-learn) and kin
        out["tfidf_logreg"] = {"measured": False, "skip_reason": f"{type(exc).__name__}: {exc}"}
        return out
    start = time.perf_counter()
    tfidf.fit(texts.train_rows)
    log.info("tfidf_logreg fitted on %d train rows in %.2fs", len(texts.train_rows),
             time.perf_counter() - start)
    out["tfidf_logreg"] = _time_model("tfidf_logreg", tfidf.scores, texts.test, settings)
    out["tfidf_logreg"]["fitted_on"] = (f"{len(texts.train_rows)} train rows of "
                                        f"{texts.dataset_version}")
    return out
