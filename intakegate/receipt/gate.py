"""The exact-receipt release gate: the one place that decides `eligible_for_shadow` or `hold`.

Train, export, runtime and the CLI all call `release_decision`. A run is comparable to the frozen
receipt only when its identity matches and its fixture inventory is exactly the frozen one; only
then are required-slice misses counted. Nothing is averaged before the inventory is checked, so
easy extra rows, duplicates or a drifted dataset cannot change the decision.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intakegate.errors import InputError
from intakegate.jsonio import load_json
from intakegate.receipt.composed import ComposedRecipe
from intakegate.receipt.evidence import (
    Labelled,
    SliceEvidence,
    check_pairs,
    composition,
    shape_costs,
    source_evidence,
)
from intakegate.receipt.shapes import ShapeRecipe
from intakegate.scoring.maths import valid_score
from intakegate.vocab import GateDecision

IDENTITY_FIELDS: tuple[str, ...] = (
    "dataset_version",
    "label_version",
    "split_manifest_version",
    "model_version",
)
PASS_REASON = "exact_receipt_pass"


@dataclass(frozen=True)
class ReceiptSpec:
    """The frozen validation receipt: who may be compared, on exactly which fixtures."""

    receipt_version: str
    identity: Mapping[str, str]
    fixture_ids: tuple[str, ...]
    required_slices: frozenset[str]
    fp_budget: float | None = None
    # How the composed fixtures among `fixture_ids` were generated (None: no composed rows).
    composed: ComposedRecipe | None = None
    # sha256 of each fixture's text (receipt.fixtures): the bundle's receipt/fixtures.jsonl
    # must hold exactly these texts. Empty for receipts that carry no texts (the seed lesson).
    fixture_sha256: Mapping[str, str] = field(default_factory=dict)
    # Missed-escalation floors of shadow traffic per required slice, from the label guide.
    shadow_floors: Mapping[str, float] = field(default_factory=dict)
    # Most that routine pairs may add beyond what their parts explain (evidence.Composition).
    max_composition_overhead: float | None = None
    # Most the one-sided 95% bound on the overall miss rate may be (evidence.Evidence).
    max_miss_rate_bound: float | None = None
    # How the shape fixtures among `fixture_ids` were generated (None: no shape rows), and the
    # most a shape's routine copies may add to the single FP (evidence.ShapeCost).
    shapes: ShapeRecipe | None = None
    max_shape_overhead: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "receipt_version": self.receipt_version,
            "identity": {k: self.identity[k] for k in IDENTITY_FIELDS},
            "fixture_ids": list(self.fixture_ids),
            "required_slices": sorted(self.required_slices),
        }
        if self.fp_budget is not None:
            out["fp_budget"] = self.fp_budget
        if self.composed is not None:
            out["composed"] = self.composed.to_json()
        if self.fixture_sha256:
            out["fixture_sha256"] = dict(self.fixture_sha256)
        if self.shadow_floors:
            out["shadow_floors"] = dict(self.shadow_floors)
        if self.max_composition_overhead is not None:
            out["max_composition_overhead"] = self.max_composition_overhead
        if self.max_miss_rate_bound is not None:
            out["max_miss_rate_bound"] = self.max_miss_rate_bound
        if self.shapes is not None:
            out["shapes"] = self.shapes.to_json()
        if self.max_shape_overhead is not None:
            out["max_shape_overhead"] = self.max_shape_overhead
        return out


@dataclass(frozen=True)
class GateRow:
    """One scored fixture. `score` may be anything a model produced; the gate judges it."""

    fixture_id: str
    slice: str
    gold: int
    score: float | None

    def to_json(self) -> dict[str, Any]:
        return {"fixture_id": self.fixture_id, "slice": self.slice, "gold": self.gold,
                "score": self.score}


@dataclass(frozen=True)
class Run:
    """A candidate's scores on the receipt's fixtures, with its identity and threshold."""

    bundle_version: str
    identity: Mapping[str, str]
    threshold: float
    rows: tuple[GateRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle_version": self.bundle_version,
            **{k: self.identity[k] for k in IDENTITY_FIELDS},
            "threshold": self.threshold,
            "rows": [row.to_json() for row in self.rows],
        }


@dataclass(frozen=True)
class GateResult:
    """The decision, its one-line reason, and the evidence behind it."""

    bundle_version: str
    decision: GateDecision
    reason: str
    missed: tuple[str, ...] = ()
    false_positive_rate: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def eligible(self) -> bool:
        return self.decision is GateDecision.ELIGIBLE_FOR_SHADOW

    def line(self) -> str:
        """The seed's one-line form."""
        return f"{self.bundle_version}: decision={self.decision.value} reason={self.reason}"

    def evidence_line(self) -> str | None:
        """What the receipt proves, e.g. "0 of 80 missed: miss rate at most 3.7% at 95%"."""
        overall = self.details.get("evidence", {}).get("overall")
        if overall is None:
            return None
        return SliceEvidence("overall", overall["sources"], overall["missed"]).line()

    def summary_lines(self) -> tuple[str, ...]:
        """The evidence line, and single and pair FP with the composition overhead."""
        lines = []
        evidence = self.evidence_line()
        if evidence is not None:
            lines.append(f"evidence: {evidence}")
        comp = self.details.get("composition")
        if comp is not None:
            lines.append(f"routine FP: single {comp['single_fp']:.1%}, pairs "
                         f"{comp['pair_fp']:.1%} (parts explain "
                         f"{comp['pair_fp_explained_by_parts']:.1%}), composition overhead "
                         f"{comp['composition_overhead']:+.3f}")
        elif self.false_positive_rate is not None:
            lines.append(f"routine FP: single {self.false_positive_rate:.1%}")
        for kind, cost in (self.details.get("shapes") or {}).items():
            lines.append(f"shape {kind}: routine copies {cost['fp']:.1%}, overhead "
                         f"{cost['shape_overhead']:+.3f}")
        return tuple(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle_version": self.bundle_version,
            "decision": self.decision.value,
            "reason": self.reason,
            "missed": list(self.missed),
            "false_positive_rate": self.false_positive_rate,
            **dict(self.details),
        }


def _hold(run: Run, reason: str, **kw: Any) -> GateResult:
    return GateResult(run.bundle_version, GateDecision.HOLD, reason, **kw)


def release_decision(spec: ReceiptSpec, run: Run) -> GateResult:
    """Decide whether `run` may enter shadow traffic under the frozen receipt `spec`."""
    for name in IDENTITY_FIELDS:
        if run.identity.get(name) != spec.identity.get(name):
            return _hold(run, f"{name}:{run.identity.get(name)}")
    if not valid_score(run.threshold) or not 0.0 < float(run.threshold) <= 1.0:
        return _hold(run, f"invalid_threshold:{run.threshold}")

    ids = [row.fixture_id for row in run.rows]
    counts = Counter(ids)
    expected = set(spec.fixture_ids)
    missing = sorted(expected - set(ids))
    unexpected = sorted(set(ids) - expected)
    duplicated = sorted(fid for fid, n in counts.items() if n != 1)
    if missing:
        return _hold(run, f"missing:{','.join(missing)}")
    if unexpected:
        return _hold(run, f"unexpected:{','.join(unexpected)}")
    if duplicated:
        return _hold(run, f"duplicate:{','.join(duplicated)}")

    invalid = [row.fixture_id for row in run.rows if not valid_score(row.score)]
    if invalid:
        return _hold(run, f"invalid_score:{','.join(invalid)}")

    threshold = float(run.threshold)
    labelled = [Labelled(r.fixture_id, r.slice, r.gold, float(r.score) >= threshold)  # type: ignore[arg-type]
                for r in run.rows]
    check_pairs(labelled)
    missed = tuple(row.fixture_id for row in labelled
                   if row.slice in spec.required_slices and row.gold == 1 and not row.flagged)
    negatives = [row for row in labelled if row.gold == 0]
    fp = sum(1 for row in negatives if row.flagged)
    comp = composition(labelled)
    evidence = source_evidence(labelled, spec.required_slices)
    details: dict[str, Any] = {
        "false_positives": fp, "negatives": len(negatives), "threshold": threshold,
        "false_positive_rate_all": fp / len(negatives) if negatives else 0.0,
        "false_positive_rate_single": comp.single_fp,
        "evidence": evidence.to_json()}
    if comp.pair_fp is not None:
        details.update(false_positive_rate_composed=comp.pair_fp,
                       composition=comp.to_json())
    costs = shape_costs(labelled)
    if costs:
        details["shapes"] = {c.kind: c.to_json() for c in costs}
    fp_rate = comp.single_fp  # the budget counts single routine tickets
    kw: dict[str, Any] = {"false_positive_rate": fp_rate, "details": details}
    if missed:
        return _hold(run, f"missed:{','.join(missed)}", missed=missed, **kw)
    if spec.fp_budget is not None and fp_rate > spec.fp_budget:
        return _hold(run, f"fp_budget:{fp_rate:.4f}>{spec.fp_budget:.4f}", **kw)
    overhead = comp.overhead
    if (spec.max_composition_overhead is not None and overhead is not None
            and overhead > spec.max_composition_overhead):
        return _hold(run, f"composition_fp:{overhead:.4f}>{spec.max_composition_overhead:.4f}",
                     **kw)
    over = [c for c in costs if spec.max_shape_overhead is not None
            and c.overhead > spec.max_shape_overhead]
    if over:
        return _hold(run, f"shape_fp:{over[0].kind}:{over[0].overhead:.4f}>"
                     f"{spec.max_shape_overhead:.4f}", **kw)
    bound = evidence.overall.bound
    if spec.max_miss_rate_bound is not None and bound > spec.max_miss_rate_bound:
        return _hold(run, f"insufficient_evidence:{evidence.overall.missed}/"
                     f"{evidence.overall.sources}:{bound:.4f}>{spec.max_miss_rate_bound:.4f}",
                     **kw)
    return GateResult(run.bundle_version, GateDecision.ELIGIBLE_FOR_SHADOW, PASS_REASON, **kw)


# ---------------------------------------------------------------------------------------------
# Reading the two public formats, with errors that name the file and field.


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path | None,
             where: str = "") -> Any:
    name = f"{where}{key}"
    if key not in obj:
        raise InputError("missing", path=path, field=name)
    value = obj[key]
    if isinstance(value, bool) and kind is not bool:
        raise InputError(f"expected {_kind_name(kind)}, got bool", path=path, field=name)
    if not isinstance(value, kind):
        raise InputError(f"expected {_kind_name(kind)}, got {type(value).__name__}", path=path,
                         field=name)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def _reject_unknown(obj: Mapping[str, Any], allowed: set[str], path: Path | None,
                    where: str = "") -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InputError(f"unknown field(s) {unknown}", path=path, field=f"{where}{unknown[0]}")


def spec_from_json(obj: Any, path: Path | None = None) -> ReceiptSpec:
    """Validate and build a receipt spec."""
    if not isinstance(obj, dict):
        raise InputError("a receipt spec must be a JSON object", path=path)
    _reject_unknown(obj, {"receipt_version", "identity", "fixture_ids", "required_slices",
                          "fp_budget", "composed", "fixture_sha256", "shadow_floors",
                          "max_composition_overhead", "max_miss_rate_bound", "shapes",
                          "max_shape_overhead"}, path)
    version = _require(obj, "receipt_version", str, path)
    identity = _require(obj, "identity", dict, path)
    _reject_unknown(identity, set(IDENTITY_FIELDS), path, "identity.")
    for name in IDENTITY_FIELDS:
        _require(identity, name, str, path, "identity.")
    fixture_ids = _require(obj, "fixture_ids", list, path)
    for i, fid in enumerate(fixture_ids):
        if not isinstance(fid, str) or not fid:
            raise InputError("fixture ids must be non-empty strings", path=path,
                             field=f"fixture_ids[{i}]")
    dupes = sorted(fid for fid, n in Counter(fixture_ids).items() if n > 1)
    if dupes:
        raise InputError(f"duplicate fixture ids {dupes}", path=path, field="fixture_ids")
    slices = _require(obj, "required_slices", list, path)
    for i, name in enumerate(slices):
        if not isinstance(name, str) or not name:
            raise InputError("slice names must be non-empty strings", path=path,
                             field=f"required_slices[{i}]")
    budget = _share(obj, "fp_budget", path)
    composed = _recipe(obj, "composed", ComposedRecipe.from_json, path)
    digests = obj.get("fixture_sha256", {})
    if not isinstance(digests, dict) or not all(
            isinstance(v, str) and len(v) == 64 for v in digests.values()):
        raise InputError("expected an object of sha256 hex digests", path=path,
                         field="fixture_sha256")
    stray = sorted(set(digests) - set(fixture_ids))
    if stray:
        raise InputError(f"digest for a fixture not in fixture_ids: {stray[0]}", path=path,
                         field="fixture_sha256")
    floors = obj.get("shadow_floors", {})
    if not isinstance(floors, dict) or not all(valid_score(v) for v in floors.values()):
        raise InputError("expected an object of shares in [0, 1]", path=path,
                         field="shadow_floors")
    overhead = _share(obj, "max_composition_overhead", path)
    bound = _share(obj, "max_miss_rate_bound", path, zero_ok=False)
    shapes = _recipe(obj, "shapes", ShapeRecipe.from_json, path)
    shape_max = _share(obj, "max_shape_overhead", path)
    return ReceiptSpec(version, dict(identity), tuple(fixture_ids), frozenset(slices),
                       budget, composed, dict(digests),
                       {k: float(v) for k, v in floors.items()},
                       overhead, bound, shapes, shape_max)


def _recipe(obj: Mapping[str, Any], key: str, parse: Any, path: Path | None) -> Any:
    """A generator recipe (composed, shapes) parsed by `parse`, or None; errors name `key`."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError("expected an object", path=path, field=key)
    try:
        return parse(value)
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), path=path, field=key) from None


def _share(obj: Mapping[str, Any], key: str, path: Path | None, zero_ok: bool = True
           ) -> float | None:
    """An optional number in [0, 1] (in (0, 1] unless `zero_ok`); errors name `key`."""
    value = obj.get(key)
    if value is None:
        return None
    if not valid_score(value) or (not zero_ok and float(value) == 0.0):
        raise InputError(f"{key} must be a number in {'[0, 1]' if zero_ok else '(0, 1]'}",
                         path=path, field=key)
    return float(value)


ROW_FIELDS = frozenset({"fixture_id", "slice", "gold", "score"})


def _plain_row(row: Any) -> GateRow | None:
    """The row when it is exactly well formed (the usual case), else None: the caller then
    checks it field by field and names what is wrong."""
    if type(row) is not dict or row.keys() != ROW_FIELDS:
        return None
    fixture_id, slice_name, gold, score = row["fixture_id"], row["slice"], row["gold"], row["score"]
    if (type(fixture_id) is not str or type(slice_name) is not str or type(gold) is not int
            or gold not in (0, 1) or (score is not None and type(score) not in (int, float))):
        return None
    return GateRow(fixture_id, slice_name, gold, None if score is None else float(score))


def run_from_json(obj: Any, path: Path | None = None) -> Run:
    """Validate and build a run. Scores may be null or non-finite: the gate holds those."""
    if not isinstance(obj, dict):
        raise InputError("a run must be a JSON object", path=path)
    _reject_unknown(obj, {"bundle_version", "threshold", "rows", *IDENTITY_FIELDS}, path)
    bundle_version = _require(obj, "bundle_version", str, path)
    identity = {name: _require(obj, name, str, path) for name in IDENTITY_FIELDS}
    threshold = _require(obj, "threshold", (int, float), path)
    rows_obj = _require(obj, "rows", list, path)
    rows = []
    for i, row in enumerate(rows_obj):
        plain = _plain_row(row)
        if plain is not None:  # thousands of rows per receipt run: the router reads one at load
            rows.append(plain)
            continue
        where = f"rows[{i}]."
        if not isinstance(row, dict):
            raise InputError("each row must be a JSON object", path=path, field=f"rows[{i}]")
        _reject_unknown(row, {"fixture_id", "slice", "gold", "score"}, path, where)
        fixture_id = _require(row, "fixture_id", str, path, where)
        slice_name = _require(row, "slice", str, path, where)
        gold = _require(row, "gold", int, path, where)
        if gold not in (0, 1):
            raise InputError(f"gold must be 0 or 1, got {gold}", path=path, field=f"{where}gold")
        if "score" not in row:
            raise InputError("missing", path=path, field=f"{where}score")
        score = row["score"]
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise InputError(f"score must be a number or null, got {type(score).__name__}",
                             path=path, field=f"{where}score")
        rows.append(GateRow(fixture_id, slice_name, gold, None if score is None else float(score)))
    return Run(bundle_version, identity, float(threshold), tuple(rows))


def load_spec(path: str | Path) -> ReceiptSpec:
    path = Path(path)
    return spec_from_json(load_json(path), path)


def load_run(path: str | Path) -> Run:
    """Read a run file. NaN/Infinity scores are parsed so that the gate can hold them."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=path) from None

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dup = sorted(k for k, n in Counter(keys).items() if n > 1)
        if dup:
            raise ValueError(f"duplicate key '{dup[0]}'")
        return dict(pairs)

    try:
        obj = json.loads(text, object_pairs_hook=no_dupes)
    except ValueError as exc:
        raise InputError(f"invalid JSON: {exc}", path=path) from None
    return run_from_json(obj, path)


def gate_files(spec_path: str | Path, run_paths: Sequence[str | Path]) -> list[GateResult]:
    """Gate every run file against one spec file."""
    spec = load_spec(spec_path)
    return [release_decision(spec, load_run(p)) for p in run_paths]
