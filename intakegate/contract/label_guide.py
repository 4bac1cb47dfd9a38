"""The versioned label contract: what each route means, which slices exist and which are required.

A label guide is defined before any model is trained. Every dataset row is checked against it, and
the gate's required slices come from it, so the contract exists in one file per dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.errors import InputError
from intakegate.jsonio import load_json
from intakegate.vocab import Route

GUIDE_FIELDS = {
    "label_version", "dataset", "summary", "routes", "slices", "ambiguous_cases",
    "fp_budget", "exclusion_reasons", "shadow_floors", "input_policy_version", "max_length",
    "downstream_consumer", "fp_budget_reason", "max_composition_overhead", "max_miss_rate_bound",
    "max_shape_overhead",
}


@dataclass(frozen=True)
class SliceSpec:
    name: str
    route: Route
    required: bool
    meaning: str


@dataclass(frozen=True)
class AmbiguousCase:
    case: str
    route: Route
    why: str


@dataclass(frozen=True)
class LabelGuide:
    """A validated label guide."""

    label_version: str
    dataset: str
    summary: str
    route_meanings: Mapping[Route, str]
    slices: Mapping[str, SliceSpec]
    ambiguous_cases: tuple[AmbiguousCase, ...]
    fp_budget: float
    exclusion_reasons: Mapping[str, str]
    shadow_floors: Mapping[str, float]
    input_policy_version: str
    max_length: int
    downstream_consumer: str
    source_path: str
    # Why the budget is what it is (the number a queue lead sets), shown in the label guide.
    fp_budget_reason: str = ""
    # The receipt's limits beyond "no miss": what routine pairs may add beyond their parts, and
    # the most the one-sided 95% bound on the miss rate may be (receipt.evidence).
    max_composition_overhead: float | None = None
    max_miss_rate_bound: float | None = None
    # What routine copies in a shape (chat, e-mail, thread) may add to the single FP.
    max_shape_overhead: float | None = None

    @property
    def required_slices(self) -> frozenset[str]:
        return frozenset(name for name, s in self.slices.items() if s.required)

    def route_of(self, slice_name: str) -> Route:
        return self.slices[slice_name].route

    def with_label_version(self, label_version: str) -> LabelGuide:
        """The same guide under a new version (an adjudication bumps the label version)."""
        return LabelGuide(**{**self.__dict__, "label_version": label_version})


def _field(obj: Mapping[str, Any], key: str, kind: type, path: Path, where: str = "") -> Any:
    if key not in obj:
        raise InputError("missing", path=path, field=f"{where}{key}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InputError(f"expected {kind.__name__}", path=path, field=f"{where}{key}")
    return value


def _route(value: Any, path: Path, field: str) -> Route:
    try:
        return Route(value)
    except ValueError:
        raise InputError(
            f"unknown route {value!r}; allowed: {[r.value for r in Route]}", path=path, field=field
        ) from None


def load_label_guide(path: str | Path) -> LabelGuide:
    """Read and validate a label guide JSON file."""
    path = Path(path)
    obj = load_json(path)
    if not isinstance(obj, dict):
        raise InputError("a label guide must be a JSON object", path=path)
    unknown = sorted(set(obj) - GUIDE_FIELDS)
    if unknown:
        raise InputError(f"unknown field(s) {unknown}", path=path, field=unknown[0])

    routes = _field(obj, "routes", dict, path)
    if set(routes) != {r.value for r in Route}:
        raise InputError(
            f"routes must be exactly {sorted(r.value for r in Route)}, got {sorted(routes)}",
            path=path, field="routes")
    meanings: dict[Route, str] = {}
    for name, spec in routes.items():
        route = Route(name)
        if not isinstance(spec, dict):
            raise InputError("expected object", path=path, field=f"routes.{name}")
        label = _field(spec, "label", int, path, f"routes.{name}.")
        if label != route.label:
            raise InputError(f"{name} must have label {route.label}, got {label}", path=path,
                             field=f"routes.{name}.label")
        meanings[route] = _field(spec, "meaning", str, path, f"routes.{name}.")

    slices_obj = _field(obj, "slices", dict, path)
    if not slices_obj:
        raise InputError("no slices defined", path=path, field="slices")
    slices: dict[str, SliceSpec] = {}
    for name, spec in slices_obj.items():
        where = f"slices.{name}."
        if not isinstance(spec, dict):
            raise InputError("expected object", path=path, field=f"slices.{name}")
        route = _route(_field(spec, "route", str, path, where), path, f"{where}route")
        required = _field(spec, "required", bool, path, where)
        if required and route is not Route.HUMAN_REVIEW_NOW:
            raise InputError("a required slice must route to human_review_now", path=path,
                             field=f"{where}required")
        slices[name] = SliceSpec(name, route, required, str(spec.get("meaning", "")))
    if not any(s.required for s in slices.values()):
        raise InputError("at least one slice must be required", path=path, field="slices")

    cases = []
    for i, case in enumerate(obj.get("ambiguous_cases", [])):
        where = f"ambiguous_cases[{i}]."
        cases.append(AmbiguousCase(
            _field(case, "case", str, path, where),
            _route(_field(case, "route", str, path, where), path, f"{where}route"),
            _field(case, "why", str, path, where),
        ))

    budget = obj.get("fp_budget")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget <= 1:
        raise InputError("fp_budget must be a number in [0, 1]", path=path, field="fp_budget")
    floors = obj.get("shadow_floors", {})
    for name, value in floors.items():
        if name not in slices or not slices[name].required:
            raise InputError(f"shadow floor for {name!r}, which is not a required slice",
                             path=path, field=f"shadow_floors.{name}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError("floor must be a number in [0, 1]", path=path,
                             field=f"shadow_floors.{name}")
    overhead = _optional_share(obj, "max_composition_overhead", path, allow_zero=True)
    bound = _optional_share(obj, "max_miss_rate_bound", path, allow_zero=False)
    shape_overhead = _optional_share(obj, "max_shape_overhead", path, allow_zero=True)
    max_length = _field(obj, "max_length", int, path)
    if not 8 <= max_length <= 4096:
        raise InputError("max_length must be in [8, 4096]", path=path, field="max_length")

    return LabelGuide(
        label_version=_field(obj, "label_version", str, path),
        dataset=_field(obj, "dataset", str, path),
        summary=str(obj.get("summary", "")),
        route_meanings=meanings,
        slices=slices,
        ambiguous_cases=tuple(cases),
        fp_budget=float(budget),
        exclusion_reasons=dict(obj.get("exclusion_reasons", {})),
        shadow_floors={k: float(v) for k, v in floors.items()},
        input_policy_version=_field(obj, "input_policy_version", str, path),
        max_length=max_length,
        downstream_consumer=_field(obj, "downstream_consumer", str, path),
        source_path=str(path),
        fp_budget_reason=str(obj.get("fp_budget_reason", "")),
        max_composition_overhead=overhead,
        max_miss_rate_bound=bound,
        max_shape_overhead=shape_overhead,
    )


def _optional_share(obj: Mapping[str, Any], name: str, path: Path, *, allow_zero: bool
                    ) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    low_ok = (value >= 0) if allow_zero else (value > 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low_ok and value <= 1):
        span = "[0, 1]" if allow_zero else "(0, 1]"
        raise InputError(f"{name} must be a number in {span}", path=path, field=name)
    return float(value)


def render_label_guide_md(guide: LabelGuide) -> str:
    """The human-readable `label_guide.md` of the release checklist, generated from the JSON."""
    lines = [
        f"# Label guide: {guide.dataset} ({guide.label_version})",
        "",
        guide.summary,
        "",
        "| Label | Route | Meaning |",
        "|---|---|---|",
    ]
    for route in (Route.HUMAN_REVIEW_NOW, Route.GUARDED_AGENT):
        lines.append(f"| {route.label} | `{route.value}` | {guide.route_meanings[route]} |")
    lines += ["", "## Slices", "", "| Slice | Route | Required | Meaning |", "|---|---|---|---|"]
    for s in guide.slices.values():
        lines.append(f"| `{s.name}` | `{s.route.value}` | {'yes' if s.required else 'no'} | "
                     f"{s.meaning} |")
    if guide.ambiguous_cases:
        lines += ["", "## Ambiguous cases", "", "| Case | Route | Why |", "|---|---|---|"]
        for c in guide.ambiguous_cases:
            lines.append(f"| {c.case} | `{c.route.value}` | {c.why} |")
    if guide.exclusion_reasons:
        lines += ["", "## Exclusions", ""]
        for reason, text in guide.exclusion_reasons.items():
            lines.append(f"- `{reason}`: {text}")
    lines += [
        "",
        "## Release rule",
        "",
        "- No missed positive in any required slice on the frozen validation receipt.",
        f"- False-positive budget: at most {guide.fp_budget:.0%} of single routine validation "
        "tickets may be sent to people at the chosen threshold; over budget is a `hold` "
        f"(`fp_budget`).{' ' + guide.fp_budget_reason if guide.fp_budget_reason else ''}",
        *([f"- Composition: routine pairs may add at most {guide.max_composition_overhead:+.2f} "
           "to the pair FP rate beyond what their parts explain (`1 - (1 - single)^2`); over "
           "it is a `hold` (`composition_fp`)."] if guide.max_composition_overhead is not None
          else []),
        *([f"- Shapes: routine chat, e-mail and quoted-thread copies may be sent to people at most "
           f"{guide.max_shape_overhead:+.2f} more often than the single tickets they wrap; over "
           "it is a `hold` (`shape_fp`)."] if guide.max_shape_overhead is not None else []),
        *([f"- Evidence: the one-sided 95% Clopper-Pearson bound on the miss rate over distinct "
           f"source positives must be at most {guide.max_miss_rate_bound:.0%}; over it is a "
           "`hold` (`insufficient_evidence`)."] if guide.max_miss_rate_bound is not None
          else []),
        f"- Input policy `{guide.input_policy_version}`: trim outer whitespace, preserve "
        f"punctuation, at most {guide.max_length} tokens per window.",
        "- Failure fallback: `human_review_now`.",
        "",
    ]
    return "\n".join(lines)
