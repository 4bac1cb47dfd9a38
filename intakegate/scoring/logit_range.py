"""Logit sanity: the range the model's logits took at gate time, and a check against it.

A broken or tampered model can return finite but saturated logits (3e38, -3e38): the softmax is
then an exact 0.0 score and the ticket would go to the agent. Train records the lowest and
highest logit the gated model produced over the validation receipt (`LogitRecorder`); the
manifest stores that range with a `factor`; serving treats any logit outside
`[low - factor * width, high + factor * width]` (width = high - low, at least 1) as an invalid
score (`logit_out_of_range`), whatever score it would give. Without a recorded range only a fixed
sanity bound applies (|logit| <= ABSOLUTE_CAP).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_FACTOR = 1.0
ABSOLUTE_CAP = 1e4
FIELDS = {"low", "high", "factor", "rows", "recorded_on"}


@dataclass(frozen=True)
class LogitRange:
    """Logits seen at gate time; `factor` widths of slack on each side are still accepted."""

    low: float
    high: float
    factor: float = DEFAULT_FACTOR
    rows: int = 0
    recorded_on: str = "validation"

    def bounds(self) -> tuple[float, float]:
        width = max(self.high - self.low, 1.0)
        return self.low - self.factor * width, self.high + self.factor * width

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "factor": self.factor, "rows": self.rows,
                "recorded_on": self.recorded_on}

    @classmethod
    def from_json(cls, obj: object) -> LogitRange:
        """Strict: the manifest field must be exactly this shape, finite, low <= high."""
        if not isinstance(obj, Mapping) or set(obj) != FIELDS:
            raise ValueError(f"logit_range must have exactly {sorted(FIELDS)}")
        low, high, factor = obj["low"], obj["high"], obj["factor"]
        numbers = (low, high, factor)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in numbers) or not low <= high or not 0 < factor <= 100:
            raise ValueError("logit_range needs finite low <= high and a factor in (0, 100]")
        if type(obj["rows"]) is not int or not isinstance(obj["recorded_on"], str):
            raise ValueError("logit_range rows must be an int and recorded_on a string")
        return cls(float(low), float(high), float(factor), obj["rows"], obj["recorded_on"])


def rows_out_of_range(logits: np.ndarray, recorded: LogitRange | None) -> np.ndarray:
    """Per row: True when a finite logit is outside the accepted range (NaN/inf rows are the
    caller's own failure and are not flagged here)."""
    values = np.asarray(logits, dtype=np.float64)
    low, high = (-math.inf, math.inf) if recorded is None else recorded.bounds()
    lo, hi = max(-ABSOLUTE_CAP, low), min(ABSOLUTE_CAP, high)
    if values.ndim == 2 and values.size and lo <= values.min() and values.max() <= hi:
        return np.zeros(values.shape[0], dtype=bool)  # all in range; a NaN fails this test
    finite = np.isfinite(values)
    with np.errstate(all="ignore"):
        outside = (np.abs(values) > ABSOLUTE_CAP) | (values < low) | (values > high)
    return (outside & finite).any(axis=1)


class LogitRecorder:
    """Wraps a logits callable (Windows -> logits) and remembers the range it returned."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.low, self.high, self.rows = math.inf, -math.inf, 0
        self._lock = threading.Lock()  # scoring may call it from several threads

    def __call__(self, windows: Any) -> np.ndarray:
        out = np.asarray(self.fn(windows))
        values = out.astype(np.float64)
        finite = values[np.isfinite(values)]
        with self._lock:
            if finite.size:
                self.low = min(self.low, float(finite.min()))
                self.high = max(self.high, float(finite.max()))
            self.rows += int(out.shape[0]) if out.ndim else 0
        return out

    def range(self, factor: float = DEFAULT_FACTOR, recorded_on: str = "validation"
              ) -> LogitRange:
        if self.rows == 0 or not math.isfinite(self.low):
            raise ValueError("no logits were recorded")
        return LogitRange(self.low, self.high, factor, self.rows, recorded_on)
