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

from intakegate.benchmarks.inputs import BenchTexts, cycle
from intakegate.benchmarks.latency import WarmSettings
from intakegate.benchmarks.stats import Progress, summarize_ms

log = logging.getLogger("intakegate.benchmarks")
NAMES = ("keyword_rule", "tfidf_logreg")


def _time_model(name: str, scores: Any, texts: Sequence[str], settings: WarmSettings
                ) -> dict[str, Any]:
    for text in cycle(tuple(texts), settings.warmup):
        scores([text])
    work = cycle(tuple(texts), settings.tickets, offset=settings.warmup)
    seconds: list[float] = []
    progress = Progress(f"{name} single-ticket latency", len(work))
    clock = time.perf_counter
    for i, text in enumerate(work):
        t0 = clock()
        scores([text])
        seconds.append(clock() - t0)
        progress.tick(i + 1)
    rates: dict[str, Any] = {}
    n = max(settings.throughput_tickets, max(settings.batch_sizes))
    batch_work = cycle(tuple(texts), n)
    for size in settings.batch_sizes:
        start = time.perf_counter()
        for i in range(0, n, size):
            scores(batch_work[i:i + size])
        elapsed = time.perf_counter() - start
        rates[str(size)] = {"batch_size": size, "tickets": n, "seconds": round(elapsed, 4),
                            "tickets_per_s": round(n / elapsed, 2) if elapsed > 0 else None}
    return {"measured": True, "latency": summarize_ms(seconds), "throughput": rates}


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
