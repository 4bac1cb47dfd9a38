"""Which int8 recipe an artifact ships: the fastest candidate that gates as well as the model.

Each int8 artifact has candidate recipes, fastest first (`intakegate.export.cpu`). All but the
last are tried on the bundle's own frozen receipt (validation rows only) before they may ship:
a candidate is kept when its receipt run is as good as the reference model's own run: the same
decision, no required positive missed that the reference did not miss, and a false-positive
rate at most one point above it (issue 15's "equal or better gate"). Otherwise the next one is
tried, and the last is kept whatever its receipt says, as before. The artifact is then re-gated
like any other: this search only chooses which bytes the re-gate sees.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.export.cpu import Int8Settings
from intakegate.receipt.gate import GateResult

log = logging.getLogger(__name__)
FP_SLACK = 0.01  # a candidate may add at most one point of false positives


@dataclass(frozen=True)
class CandidateOutcome:
    """One candidate recipe's receipt, as the manifest records it."""

    recipe: str
    reason: str  # the gate's reason for the candidate's run; "not_tried" / "last_candidate"
    required_missed: int | None
    false_positive_rate: float | None
    kept: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "gate_reason": self.reason,
                "required_missed": self.required_missed,
                "false_positive_rate": self.false_positive_rate, "kept": self.kept,
                "seconds": round(self.seconds, 2)}


def as_good_as(candidate: GateResult, reference: GateResult, fp_slack: float = FP_SLACK
               ) -> bool:
    """Whether `candidate` gates as well as `reference` (see the module docstring). A run that
    never reached the false-positive count (identity, missing or invalid scores) never is."""
    if candidate.false_positive_rate is None or reference.false_positive_rate is None:
        return False
    if candidate.decision is not reference.decision:
        return False
    if set(candidate.missed) - set(reference.missed):
        return False
    return candidate.false_positive_rate <= reference.false_positive_rate + fp_slack


def choose_recipe(candidates: Sequence[Int8Settings], out: Path, work_dir: Path,
                  build: Callable[[Int8Settings, Path], dict[str, Any]],
                  gate: Callable[[Path], GateResult] | None, reference: GateResult | None
                  ) -> tuple[dict[str, Any], tuple[CandidateOutcome, ...]]:
    """Build the first candidate whose receipt `as_good_as` the reference into `out` (the last
    one untried). `build(settings, path)` quantizes and returns the export settings;
    `gate(path)` scores the graph at `path` on the receipt. Without `gate` or `reference` (no
    fixtures, or a CPU family whose receipt would not be exact) only the last is built."""
    *faster, last = candidates
    out.parent.mkdir(parents=True, exist_ok=True)
    outcomes: list[CandidateOutcome] = []
    for settings in faster:
        if gate is None or reference is None:
            outcomes.append(CandidateOutcome(settings.recipe, "not_tried", None, None, False,
                                             0.0))
            continue
        started = time.monotonic()
        path = work_dir / f"{settings.recipe}.onnx"
        built = build(settings, path)
        result = gate(path)
        kept = as_good_as(result, reference)
        outcomes.append(CandidateOutcome(settings.recipe, result.reason, len(result.missed),
                                         result.false_positive_rate, kept,
                                         time.monotonic() - started))
        log.info("int8 recipe %s: %s, false positives %s (the model: %s, %s): %s",
                 settings.recipe, result.reason, result.false_positive_rate, reference.reason,
                 reference.false_positive_rate, "kept" if kept else "not kept")
        if kept:
            path.replace(out)
            return built, tuple(outcomes)
        path.unlink(missing_ok=True)
    started = time.monotonic()
    built = build(last, out)
    outcomes.append(CandidateOutcome(last.recipe, "last_candidate", None, None, True,
                                     time.monotonic() - started))
    return built, tuple(outcomes)
