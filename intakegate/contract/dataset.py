"""Ticket datasets: strict loading against the label guide, exclusions and adjudications.

Nothing is dropped silently. A malformed row is an error naming file:line and field; a row the
data says to exclude (spam, internal QA, no customer text) is kept in `excluded` with its reason
so the data card can list it; an adjudicated row is listed with its written reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from intakegate.contract.label_guide import LabelGuide, load_label_guide
from intakegate.contract.shapes import SHAPE_ROUTE, SHAPES
from intakegate.errors import InputError
from intakegate.jsonio import load_json, loads_strict
from intakegate.vocab import Route

ROW_REQUIRED = ("id", "text", "gold_route", "slice")
ROW_OPTIONAL = ("account", "month", "tags", "excluded_reason", "source_split", "shape")


@dataclass(frozen=True)
class TicketRow:
    """One labelled ticket."""

    id: str
    text: str
    gold_route: Route
    slice: str
    account: str | None = None
    month: int | None = None
    tags: tuple[str, ...] = ()
    source_split: str | None = None
    origin: str = ""
    # How the ticket is written (intakegate.contract.shapes.SHAPES); None: untagged.
    shape: str | None = None

    @property
    def gold(self) -> int:
        return self.gold_route.label

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text,
                               "gold_route": self.gold_route.value, "slice": self.slice}
        if self.shape is not None:
            out["shape"] = self.shape
        if self.account is not None:
            out["account"] = self.account
        if self.month is not None:
            out["month"] = self.month
        if self.tags:
            out["tags"] = list(self.tags)
        if self.source_split is not None:
            out["source_split"] = self.source_split
        return out


@dataclass(frozen=True)
class ExcludedRow:
    id: str
    text: str
    reason: str
    origin: str


@dataclass(frozen=True)
class Adjudication:
    """A person's written decision about one row; it applies to every split alike."""

    id: str
    action: str  # "relabel" or "exclude"
    reason: str
    new_slice: str | None = None
    old_slice: str | None = None


@dataclass(frozen=True)
class SplitConfig:
    rule: str
    version: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """A validated dataset, ready to split."""

    name: str
    dataset_version: str
    guide: LabelGuide
    rows: tuple[TicketRow, ...]
    excluded: tuple[ExcludedRow, ...]
    adjudications: tuple[Adjudication, ...]
    split: SplitConfig
    receipt_version: str
    sources: tuple[str, ...]
    description: str = ""
    hypothetical: bool = False
    baseline_keywords: tuple[str, ...] = ()
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def by_id(self) -> dict[str, TicketRow]:
        return {row.id: row for row in self.rows}


# ---------------------------------------------------------------------------------------------
# Row parsing


def parse_row(obj: Any, guide: LabelGuide, *, path: str, line: int) -> TicketRow | ExcludedRow:
    """Validate one row object against the guide."""
    if not isinstance(obj, dict):
        raise InputError("each line must be a JSON object", path=path, line=line)
    unknown = sorted(set(obj) - set(ROW_REQUIRED) - set(ROW_OPTIONAL))
    if unknown:
        raise InputError(f"unknown field(s) {unknown}", path=path, line=line, field=unknown[0])
    for key in ROW_REQUIRED:
        if key not in obj:
            raise InputError("missing", path=path, line=line, field=key)
        if not isinstance(obj[key], str):
            raise InputError("expected a string", path=path, line=line, field=key)
    row_id = obj["id"].strip()
    if not row_id:
        raise InputError("empty id", path=path, line=line, field="id")
    text = obj["text"]
    shape = obj.get("shape")
    if shape is not None and shape not in SHAPES:
        raise InputError(f"row {row_id!r}: unknown shape {shape!r}; allowed: {list(SHAPES)}",
                         path=path, line=line, field="shape")
    excluded_reason = obj.get("excluded_reason")
    if excluded_reason is not None:
        if excluded_reason not in guide.exclusion_reasons:
            raise InputError(
                f"unknown exclusion reason {excluded_reason!r}; the label guide allows "
                f"{sorted(guide.exclusion_reasons)}", path=path, line=line, field="excluded_reason")
        return ExcludedRow(row_id, text, excluded_reason, f"{path}:{line}")
    if not text.strip():
        raise InputError("empty text (mark the row with an excluded_reason instead)", path=path,
                         line=line, field="text")
    try:
        route = Route(obj["gold_route"])
    except ValueError:
        raise InputError(f"unknown route {obj['gold_route']!r}", path=path, line=line,
                         field="gold_route") from None
    slice_name = obj["slice"]
    if slice_name not in guide.slices:
        raise InputError(f"slice {slice_name!r} is not in label guide {guide.source_path}",
                         path=path, line=line, field="slice")
    if guide.route_of(slice_name) is not route:
        raise InputError(
            f"slice {slice_name!r} routes to {guide.route_of(slice_name).value} in the label "
            f"guide, but the row says {route.value}", path=path, line=line, field="gold_route")
    account = obj.get("account")
    if account is not None and (not isinstance(account, str) or not account.strip()):
        raise InputError("account must be a non-empty string", path=path, line=line,
                         field="account")
    month = obj.get("month")
    if month is not None and (isinstance(month, bool) or not isinstance(month, int) or month < 1):
        raise InputError("month must be a positive integer", path=path, line=line, field="month")
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InputError("tags must be a list of strings", path=path, line=line, field="tags")
    source_split = obj.get("source_split")
    if shape in SHAPE_ROUTE and SHAPE_ROUTE[shape] is not route:
        raise InputError(f"row {row_id!r}: shape {shape!r} applies only to "
                         f"{SHAPE_ROUTE[shape].value} rows, but the row says {route.value}",
                         path=path, line=line, field="shape")
    return TicketRow(row_id, text, route, slice_name, account, month, tuple(tags), source_split,
                     f"{path}:{line}", shape)


def check_unique(rows: Iterable[TicketRow | ExcludedRow]) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        if row.id in seen:
            path, _, line = row.origin.rpartition(":")
            raise InputError(f"duplicate id {row.id!r} (first at {seen[row.id]})", path=path,
                             line=int(line), field="id")
        seen[row.id] = row.origin


def read_jsonl(path: str | Path, guide: LabelGuide) -> list[TicketRow | ExcludedRow]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    out: list[TicketRow | ExcludedRow] = []
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8: {exc}", path=path, line=number) from None
        if not line.strip():
            continue
        out.append(parse_row(loads_strict(line, path=path, line=number), guide, path=str(path),
                             line=number))
    check_unique(out)
    return out


def read_banking77_csv(path: str | Path, guide: LabelGuide,
                       source_split: str) -> list[TicketRow | ExcludedRow]:
    """Banking77's `text,category` CSV: slice = intent, route from the label guide."""
    path = Path(path)
    out: list[TicketRow | ExcludedRow] = []
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != ["text", "category"]:
            raise InputError(f"expected header text,category, got {reader.fieldnames}",
                             path=path, line=1)
        for record in reader:
            line = reader.line_num
            intent = record["category"]
            if intent not in guide.slices:
                raise InputError(f"intent {intent!r} is not in label guide {guide.source_path}",
                                 path=path, line=line, field="category")
            obj = {"id": f"{source_split}-{line:05d}", "text": record["text"],
                   "gold_route": guide.route_of(intent).value, "slice": intent,
                   "source_split": source_split}
            out.append(parse_row(obj, guide, path=str(path), line=line))
    return out


# ---------------------------------------------------------------------------------------------
# Adjudication


def load_adjudications(path: str | Path, guide: LabelGuide) -> tuple[str, list[Adjudication]]:
    """Read an adjudication file; returns the bumped label version and its entries."""
    path = Path(path)
    obj = load_json(path)
    if not isinstance(obj, dict) or set(obj) != {"label_version", "base_label_version", "entries"}:
        raise InputError("expected keys label_version, base_label_version, entries", path=path)
    if obj["base_label_version"] != guide.label_version:
        raise InputError(
            f"adjudicates {obj['base_label_version']!r} but the label guide is "
            f"{guide.label_version!r}", path=path, field="base_label_version")
    if obj["label_version"] == guide.label_version:
        raise InputError("an adjudication must bump the label version", path=path,
                         field="label_version")
    entries = []
    for i, e in enumerate(obj["entries"]):
        where = f"entries[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            raise InputError("each entry needs an id", path=path, field=where)
        reason = e.get("reason")
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise InputError("each entry needs a written reason", path=path,
                             field=f"{where}.reason")
        action = e.get("action")
        if action == "relabel":
            new_slice = e.get("slice")
            if new_slice not in guide.slices:
                raise InputError(f"slice {new_slice!r} is not in the label guide", path=path,
                                 field=f"{where}.slice")
            entries.append(Adjudication(e["id"], action, reason, new_slice))
        elif action == "exclude":
            entries.append(Adjudication(e["id"], action, reason))
        else:
            raise InputError("action must be 'relabel' or 'exclude'", path=path,
                             field=f"{where}.action")
    return obj["label_version"], entries


def apply_adjudications(rows: Sequence[TicketRow], guide: LabelGuide,
                        entries: Sequence[Adjudication], path: str
                        ) -> tuple[list[TicketRow], list[ExcludedRow], list[Adjudication]]:
    by_id = {row.id: row for row in rows}
    unknown = [e.id for e in entries if e.id not in by_id]
    if unknown:
        raise InputError(f"adjudication names unknown row id(s) {unknown}", path=path)
    decided = {e.id: e for e in entries}
    kept: list[TicketRow] = []
    excluded: list[ExcludedRow] = []
    applied: list[Adjudication] = []
    for row in rows:
        entry = decided.get(row.id)
        if entry is None:
            kept.append(row)
        elif entry.action == "exclude":
            excluded.append(ExcludedRow(row.id, row.text, f"adjudicated: {entry.reason}",
                                        row.origin))
            applied.append(replace(entry, old_slice=row.slice))
        else:
            assert entry.new_slice is not None
            kept.append(replace(row, slice=entry.new_slice,
                                gold_route=guide.route_of(entry.new_slice)))
            applied.append(replace(entry, old_slice=row.slice))
    return kept, excluded, applied


# ---------------------------------------------------------------------------------------------
# Dataset configs


def data_root() -> Path:
    """Where the shipped datasets live (the repository's data/ folder, installed as package)."""
    return Path(str(resources.files("intakegate.data")))


def shipped_datasets() -> list[str]:
    return sorted(p.parent.name for p in data_root().glob("*/dataset.json"))


def shipped_versions(name: str) -> dict[str, Path]:
    """A shipped dataset's versions by short name (`v1`, `v2`, ...) -> their dataset.json.

    The default version lives at data/<name>/dataset.json; a newer one that is not the default
    yet lives at data/<name>/<version>/dataset.json. The short name of the default is the tail
    of its `dataset_version` (`refund-intake-v1` -> `v1`)."""
    folder = data_root() / name
    out: dict[str, Path] = {}
    default = folder / "dataset.json"
    if default.exists():
        version = str(load_json(default).get("dataset_version", ""))
        if version.startswith(f"{name}-"):
            out[version[len(name) + 1:]] = default
    for config in sorted(folder.glob("*/dataset.json")):
        out.setdefault(config.parent.name, config)
    return out


def shipped_version_config(spec: str) -> Path:
    """`name@version` (e.g. `refund-intake@v2`) -> that shipped version's dataset.json."""
    name, _, version = spec.partition("@")
    if name not in shipped_datasets():
        raise InputError(f"no shipped dataset {name!r}; shipped: {shipped_datasets()}",
                         path=spec)
    versions = shipped_versions(name)
    if version not in versions:
        raise InputError(f"no version {version!r} of {name}; shipped versions: "
                         f"{sorted(versions)}", path=spec)
    return versions[version]


def content_sha256(rows: Iterable[TicketRow]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row.to_json(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _check_required_have_rows(rows: Sequence[TicketRow], guide: LabelGuide, where: str) -> None:
    present = {row.slice for row in rows}
    empty = sorted(guide.required_slices - present)
    if empty:
        raise InputError(f"required slice(s) {empty} have no rows", path=where)


def load_dataset(name_or_path: str | Path, *, label_guide: str | Path | None = None,
                 adjudication: str | Path | None = None) -> Dataset:
    """Load a shipped dataset by name (its default version), `name@version` (a shipped version,
    e.g. `refund-intake@v2`), a dataset.json config, or a JSONL file plus a guide."""
    spec = str(name_or_path)
    if spec in shipped_datasets():
        config_path = data_root() / spec / "dataset.json"
    elif "@" in spec and not Path(spec).exists():
        config_path = shipped_version_config(spec)
    else:
        config_path = Path(spec)
    if config_path.suffix == ".jsonl":
        if label_guide is None:
            raise InputError("a JSONL dataset needs --label-guide PATH", path=config_path)
        config: dict[str, Any] = {
            "name": config_path.stem, "dataset_version": f"{config_path.stem}-v1",
            "format": "jsonl", "rows": config_path.name, "label_guide": str(label_guide),
            "receipt_version": f"{config_path.stem}-validation-v1",
            "split": {"rule": "grouped_time", "version": f"{config_path.stem}-split-v1",
                      "params": {"train_fraction": 0.6, "validation_fraction": 0.2}},
        }
        base = config_path.parent
    else:
        if not config_path.exists():
            raise InputError(
                f"no such dataset; shipped: {shipped_datasets()}, or pass a dataset.json or "
                "a .jsonl file", path=config_path)
        config = load_json(config_path)
        base = config_path.parent
    guide_path = Path(label_guide) if label_guide else base / config["label_guide"]
    guide = load_label_guide(guide_path)
    fmt = config.get("format", "jsonl")
    parsed: list[TicketRow | ExcludedRow] = []
    sources: list[str] = [str(guide_path)]
    if fmt == "jsonl":
        path = base / config["rows"]
        parsed = read_jsonl(path, guide)
        sources.append(str(path))
    elif fmt == "banking77_csv":
        for split_name, rel in config["rows"].items():
            path = base / rel
            parsed += read_banking77_csv(path, guide, split_name)
            sources.append(str(path))
        check_unique(parsed)
    else:
        raise InputError(f"unknown format {fmt!r}", path=config_path, field="format")
    rows = [r for r in parsed if isinstance(r, TicketRow)]
    excluded = [r for r in parsed if isinstance(r, ExcludedRow)]
    applied: list[Adjudication] = []
    adjudication = adjudication or (base / config["adjudication"] if config.get("adjudication")
                                    else None)
    if adjudication:
        new_version, entries = load_adjudications(adjudication, guide)
        rows, more, applied = apply_adjudications(rows, guide, entries, str(adjudication))
        excluded += more
        guide = guide.with_label_version(new_version)
        sources.append(str(adjudication))
    _check_required_have_rows(rows, guide, str(config_path))
    split_obj = config["split"]
    version = f"{config['dataset_version']}+{content_sha256(rows)[:12]}"
    return Dataset(
        name=config["name"],
        dataset_version=version,
        guide=guide,
        rows=tuple(rows),
        excluded=tuple(excluded),
        adjudications=tuple(applied),
        split=SplitConfig(split_obj["rule"], split_obj["version"], split_obj.get("params", {})),
        receipt_version=config["receipt_version"],
        sources=tuple(sources),
        description=config.get("description", ""),
        hypothetical=bool(config.get("hypothetical", False)),
        baseline_keywords=tuple(config.get("baseline_keywords", ())),
        recipe=dict(config.get("recipe", {})),
    )
