"""What a receipt proves: distinct source positives, misses, and a bound on the miss rate.

"0 missed" on 36 positives does not say the miss rate is 0; it says it is at most 8.0% at 95%
confidence (one-sided Clopper-Pearson). A composed copy is not new evidence: it belongs to the
risky ticket it was built from, and that source counts as missed when any of its copies is.

And what composition costs: routine pairs should not look riskier than their parts. With `s` the
single routine FP rate and `p` the routine-pair rate at one threshold, the overhead is
`p - (1 - (1 - s)^2)`, what joining two routine tickets adds beyond "either part alone would be
flagged".

The bound is computed here by bisection on the exact binomial tail (math.comb), not with scipy:
the runtime re-gates a bundle's receipt at every load, and the core stays numpy-free and
scipy-free for that cold start. `tests/test_evidence.py` checks it against scipy's beta quantile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from intakegate.errors import InputError
from intakegate.receipt.composed import PREFIX, ROUTINE_PAIR, parse_composed_id
from intakegate.receipt.shapes import (
    ROUTINE,
    SHAPE_PREFIX,
    is_shape_slice,
    is_single_slice,
    parse_shape_id,
    shape_kind,
)

CONFIDENCE = 0.95


def miss_rate_bound(missed: int, sources: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided upper Clopper-Pearson bound on a miss rate: the largest rate under which
    seeing at most `missed` misses in `sources` trials still has probability 1 - confidence."""
    if sources < 0 or not 0 <= missed <= sources:
        raise ValueError(f"need 0 <= missed <= sources, got {missed} of {sources}")
    if missed == sources:
        return 1.0
    alpha = 1.0 - confidence
    if missed == 0:
        return 1.0 - alpha ** (1.0 / sources)
    low, high = missed / sources, 1.0
    for _ in range(200):  # the tail falls monotonically in p; bisection to float precision
        mid = (low + high) / 2
        if _binomial_cdf(missed, sources, mid) > alpha:
            low = mid
        else:
            high = mid
        if high - low < 1e-12:
            break
    return high


def _binomial_cdf(k: int, n: int, p: float) -> float:
    log_p, log_q = math.log(p), math.log1p(-p)
    return sum(math.exp(math.log(math.comb(n, i)) + i * log_p + (n - i) * log_q)
               for i in range(k + 1))


@dataclass(frozen=True)
class SliceEvidence:
    """Distinct source positives of one required slice (or of all of them), and the misses."""

    slice: str
    sources: int
    missed: int

    @property
    def bound(self) -> float:
        return miss_rate_bound(self.missed, self.sources) if self.sources else 1.0

    def line(self) -> str:
        return (f"{self.missed} of {self.sources} missed: miss rate at most {self.bound:.1%} "
                f"at {CONFIDENCE:.0%}")

    def to_json(self) -> dict[str, Any]:
        return {"sources": self.sources, "missed": self.missed,
                "miss_rate_bound": round(self.bound, 6)}


@dataclass(frozen=True)
class Evidence:
    """Per required slice and overall; `confidence` of the one-sided bounds."""

    slices: tuple[SliceEvidence, ...]
    overall: SliceEvidence

    def to_json(self) -> dict[str, Any]:
        return {"confidence": CONFIDENCE, "rule": "one-sided Clopper-Pearson upper bound; a "
                "composed copy counts for its source, missed when any copy is",
                "overall": self.overall.to_json(),
                "slices": {s.slice: s.to_json() for s in self.slices}}


@dataclass(frozen=True)
class Labelled:
    """What evidence needs of a scored fixture (a gate row, a test row)."""

    fixture_id: str
    slice: str
    gold: int
    flagged: bool


def _parts(row: Labelled) -> tuple[str, ...]:
    """The ids a derived row is built from: a composed join's two parts, a shape copy's source;
    nothing for a single ticket. A malformed derived id is an error naming it."""
    if row.slice.startswith(PREFIX):
        parts = parse_composed_id(row.fixture_id)
        if parts is None:
            raise InputError("a composed fixture's id must be cmp|<first>|<second>|<joiner>",
                             field=row.fixture_id)
        return parts[:2]
    if is_shape_slice(row.slice):
        shaped = parse_shape_id(row.fixture_id)
        if shaped is None:
            raise InputError("a shape fixture's id must be shp|<kind>|<variant>|<source>",
                             field=row.fixture_id)
        return (shaped[2],)
    return ()


def check_pairs(rows: Sequence[Labelled]) -> None:
    """Every composed row names two parts, and every shape copy a source, that are in the
    inventory (errors name the id)."""
    known = {r.fixture_id for r in rows}
    for row in rows:
        for part in _parts(row):
            if part not in known:
                raise InputError(f"derived fixture names a part not in the inventory: {part}",
                                 field=row.fixture_id)


def source_of(row: Labelled, by_id: Mapping[str, Labelled]) -> str:
    """The single source positive a positive row stands for: itself, a composed copy's positive
    part, a shape copy's source (resolved again when that is a composed row)."""
    parts = _parts(row)
    if not parts:
        return row.fixture_id
    absent = [p for p in parts if p not in by_id]
    if absent:
        raise InputError(f"derived fixture names a part not in the inventory: {absent[0]}",
                         field=row.fixture_id)
    if len(parts) == 1:
        return source_of(by_id[parts[0]], by_id)
    positive = [p for p in parts if by_id[p].gold == 1]
    if len(positive) != 1:
        raise InputError(f"a composed positive needs exactly one positive part, has "
                         f"{len(positive)}", field=row.fixture_id)
    return positive[0]


def source_evidence(rows: Sequence[Labelled], required: frozenset[str] | set[str],
                    inventory: Sequence[Labelled] | None = None) -> Evidence:
    """Distinct source positives per required slice, a source missed when any copy is.
    `inventory`: where parts are looked up, when `rows` is a part of it."""
    by_id = {r.fixture_id: r for r in (rows if inventory is None else inventory)}
    missed: dict[str, bool] = {}
    slice_of: dict[str, str] = {}
    for row in rows:
        if row.gold != 1 or row.slice not in required:
            continue
        source = source_of(row, by_id)
        slice_of[source] = by_id[source].slice if source in by_id else row.slice
        missed[source] = missed.get(source, False) or not row.flagged
    names = sorted({s for s in required if is_single_slice(s)} or
                   {s.removeprefix(PREFIX) for s in required})
    per = tuple(SliceEvidence(name, sum(1 for s in slice_of.values() if s == name),
                              sum(1 for src, s in slice_of.items() if s == name and missed[src]))
                for name in names)
    overall = SliceEvidence("overall", len(missed), sum(missed.values()))
    return Evidence(per, overall)


@dataclass(frozen=True)
class Composition:
    """Single and routine-pair FP at one threshold, and what composition adds."""

    single_fp: float
    pair_fp: float | None

    @property
    def explained(self) -> float:
        return 1.0 - (1.0 - self.single_fp) ** 2

    @property
    def overhead(self) -> float | None:
        return None if self.pair_fp is None else self.pair_fp - self.explained

    def to_json(self) -> dict[str, Any]:
        return {"single_fp": self.single_fp, "pair_fp": self.pair_fp,
                "pair_fp_explained_by_parts": self.explained,
                "composition_overhead": self.overhead,
                "rule": "pair_fp - (1 - (1 - single_fp)^2)"}

    def line(self) -> str:
        pair = "no pairs" if self.pair_fp is None else (
            f"pairs {self.pair_fp:.1%} (parts explain {self.explained:.1%}, overhead "
            f"{self.overhead:+.3f})")
        return f"routine FP single {self.single_fp:.1%}, {pair}"


def composition(rows: Sequence[Labelled]) -> Composition:
    """Routine single tickets against routine pairs (`composed:routine_pair`)."""
    singles = [r.flagged for r in rows if r.gold == 0 and is_single_slice(r.slice)]
    pairs = [r.flagged for r in rows if r.gold == 0 and r.slice == ROUTINE_PAIR]
    single_fp = sum(singles) / len(singles) if singles else 0.0
    return Composition(single_fp, sum(pairs) / len(pairs) if pairs else None)


@dataclass(frozen=True)
class ShapeCost:
    """Routine copies of single tickets in one shape against the single tickets themselves."""

    kind: str
    fp: float
    copies: int
    single_fp: float

    @property
    def overhead(self) -> float:
        return self.fp - self.single_fp

    def to_json(self) -> dict[str, Any]:
        return {"fp": self.fp, "copies": self.copies, "single_fp": self.single_fp,
                "shape_overhead": self.overhead, "rule": "shape fp - single fp"}


def shape_costs(rows: Sequence[Labelled]) -> tuple[ShapeCost, ...]:
    """Per shape kind, the FP of the routine copies of single tickets (`shape:<kind>:routine`)
    and what the shape adds beyond the single FP."""
    single_fp = composition(rows).single_fp
    kinds = sorted({shape_kind(r.slice) for r in rows if is_shape_slice(r.slice)} - {None})
    out = []
    for kind in kinds:
        flags = [r.flagged for r in rows if r.slice == f"{SHAPE_PREFIX}{kind}:{ROUTINE}"]
        if flags:
            out.append(ShapeCost(str(kind), sum(flags) / len(flags), len(flags), single_fp))
    return tuple(out)
