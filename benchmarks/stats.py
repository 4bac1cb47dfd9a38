"""Latency summaries and progress lines shared by every measurement."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("intakegate.benchmarks")


def summarize_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """p50/p95/p99 (and mean, min, max) in milliseconds of per-call wall times in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None,
                "min_ms": None, "max_ms": None}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"n": int(ms.size), "p50_ms": round(float(p50), 4), "p95_ms": round(float(p95), 4),
            "p99_ms": round(float(p99), 4), "mean_ms": round(float(ms.mean()), 4),
            "min_ms": round(float(ms.min()), 4), "max_ms": round(float(ms.max()), 4)}


class Progress:
    """Log `what: i/n` at most every `every_s` seconds, so a long run shows it is alive."""

    def __init__(self, what: str, total: int, every_s: float = 3.0) -> None:
        self.what = what
        self.total = total
        self.every_s = every_s
        self.start = time.perf_counter()
        self.last = self.start

    def tick(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            log.info("%s: %d/%d (%.0fs)", self.what, done, self.total, now - self.start)
