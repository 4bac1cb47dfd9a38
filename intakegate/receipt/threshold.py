"""The threshold rule, the sweep and the calibration diagnostic, on frozen validation scores.

Training and reports use it; serving never does (it reads the threshold from the manifest).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if (self.tp + self.fn) else 1.0

    @property
    def fp_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if (self.fp + self.tn) else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if (self.tp + self.fp) else 1.0

    def line(self) -> str:
        """The seed's sweep line."""
        return (f"threshold={self.threshold:.2f} tp={self.tp} fp={self.fp} fn={self.fn} "
                f"recall={self.recall:.2f}")


def confusion_at(scores: Sequence[float], golds: Sequence[int], threshold: float) -> SweepPoint:
    """Counts at one threshold; a score equal to the threshold escalates (>=)."""
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(golds, dtype=np.int64)
    pred = s >= threshold
    tp = int(np.sum(pred & (g == 1)))
    fp = int(np.sum(pred & (g == 0)))
    fn = int(np.sum(~pred & (g == 1)))
    tn = int(np.sum(~pred & (g == 0)))
    return SweepPoint(float(threshold), tp, fp, fn, tn)


def sweep(scores: Sequence[float], golds: Sequence[int],
          thresholds: Iterable[float]) -> list[SweepPoint]:
    return [confusion_at(scores, golds, t) for t in thresholds]


def choose_threshold(scores: Sequence[float], golds: Sequence[int], slices: Sequence[str],
                     required_slices: Iterable[str], margin_logit: float = 0.0) -> float:
    """The largest threshold at which no required-slice positive is missed, less a margin.

    With `>=` escalating, the largest such threshold is exactly the lowest score among
    required-slice positives. Pinned there, a re-exported or quantized artifact passes or fails
    the same receipt by numerical noise, so the threshold is lowered by `margin_logit` in
    log-odds (a fixed relative safety margin that also works for scores near 0 or 1). The
    false-positive budget is then checked at the lowered threshold.
    """
    required = set(required_slices)
    pos = [float(s) for s, g, sl in zip(scores, golds, slices) if g == 1 and sl in required]
    if not pos:
        raise ValueError("no required-slice positives to choose a threshold from")
    if not all(np.isfinite(pos)):
        raise ValueError("a required-slice positive has a non-finite score")
    lowest = min(pos)
    if margin_logit <= 0.0 or lowest <= 0.0:
        return lowest
    if lowest >= 1.0:
        lowest = float(np.nextafter(1.0, 0.0))
    logit = np.log(lowest) - np.log1p(-lowest)
    return float(1.0 / (1.0 + np.exp(-(logit - margin_logit))))


@dataclass(frozen=True)
class CalibrationBucket:
    name: str
    low: float
    high: float
    n: int
    mean_score: float | None
    observed_rate: float | None

    def line(self) -> str:
        """The seed's calibration line."""
        if self.n == 0:
            return f"{self.name}: n=0"
        return (f"{self.name}: n={self.n}, score={self.mean_score:.2f}, "
                f"observed={self.observed_rate:.2f}")


def calibration_buckets(scores: Sequence[float], golds: Sequence[int], edges: Sequence[float],
                        names: Sequence[str] | None = None) -> list[CalibrationBucket]:
    """Held-out reliability buckets: [edge_i, edge_i+1), the last one closed at 1.0."""
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(golds, dtype=np.float64)
    out = []
    for i in range(len(edges) - 1):
        low, high = float(edges[i]), float(edges[i + 1])
        last = i == len(edges) - 2
        mask = (s >= low) & ((s <= high) if last else (s < high))
        close = "]" if last else ")"
        default = f"[{low:.1f},{high:.1f}{close}"
        name = f"{names[i]} {default}" if names else default
        n = int(mask.sum())
        out.append(CalibrationBucket(
            name, low, high, n,
            float(s[mask].mean()) if n else None,
            float(g[mask].mean()) if n else None,
        ))
    return out


def expected_calibration_error(scores: Sequence[float], golds: Sequence[int],
                               n_buckets: int = 10) -> float:
    """ECE over equal-width buckets, weighted by bucket size."""
    edges = np.linspace(0.0, 1.0, n_buckets + 1)
    buckets = calibration_buckets(scores, golds, edges)
    total = sum(b.n for b in buckets)
    if total == 0:
        return 0.0
    return float(sum(b.n / total * abs(b.mean_score - b.observed_rate)  # type: ignore[operator]
                     for b in buckets if b.n))
