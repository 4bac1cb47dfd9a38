"""Frozen splits: group by account, then hold out later traffic; or a documented fixed rule.

The split is written as a manifest with a version string and a content hash of the row ids per
split. The same inputs always give the same manifest; a changed dataset gives a new hash, and the
hash is part of the split version that receipts pin.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from intakegate.contract.dataset import Dataset, TicketRow
from intakegate.errors import InputError
from intakegate.vocab import Split

SPLITS = (Split.TRAIN, Split.VALIDATION, Split.TEST)


@dataclass(frozen=True)
class SplitResult:
    """Row ids per split plus the frozen manifest that describes them."""

    assignment: Mapping[str, Split]
    manifest: Mapping[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["split_manifest_version"])

    def ids(self, split: Split) -> list[str]:
        return list(self.manifest["splits"][split.value]["ids"])

    def rows(self, dataset: Dataset, split: Split) -> list[TicketRow]:
        by_id = dataset.by_id()
        return [by_id[i] for i in self.ids(split)]


def grouped_time_assignment(
    rows: Sequence[TicketRow],
    *,
    train_through_month: int | None = None,
    validation_through_month: int | None = None,
    train_fraction: float = 0.6,
    validation_fraction: float = 0.2,
) -> dict[str, Split]:
    """Assign whole accounts, ordered by the month they were first seen.

    With month cut-offs: accounts first seen up to `train_through_month` train, up to
    `validation_through_month` validate, later ones test. Without them: accounts are taken in
    first-seen order until the cumulative share of rows passes each fraction.
    """
    first_month: dict[str, int] = {}
    count: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.account is None or row.month is None:
            raise InputError("the grouped-time split needs account and month on every row",
                             path=row.origin.rpartition(":")[0] or None,
                             line=int(row.origin.rpartition(":")[2] or 0) or None,
                             field="account" if row.account is None else "month")
        first_month[row.account] = min(first_month.get(row.account, row.month), row.month)
        count[row.account] += 1
    order = sorted(first_month, key=lambda a: (first_month[a], a))
    account_split: dict[str, Split] = {}
    if train_through_month is not None and validation_through_month is not None:
        if not train_through_month < validation_through_month:
            raise ValueError("train_through_month must be before validation_through_month")
        for account in order:
            m = first_month[account]
            account_split[account] = (Split.TRAIN if m <= train_through_month else
                                      Split.VALIDATION if m <= validation_through_month else
                                      Split.TEST)
    else:
        total = sum(count.values())
        cumulative = 0
        for account in order:
            cumulative += count[account]
            share = cumulative / total
            account_split[account] = (
                Split.TRAIN if share <= train_fraction + 1e-9 else
                Split.VALIDATION if share <= train_fraction + validation_fraction + 1e-9 else
                Split.TEST)
    return {row.id: account_split[row.account] for row in rows}  # type: ignore[index]


def stratified_validation_assignment(rows: Sequence[TicketRow], *, validation_fraction: float,
                                     seed: int) -> dict[str, Split]:
    """Official test file is test; a stratified share of each train intent validates."""
    rng = np.random.default_rng(seed)
    out: dict[str, Split] = {}
    by_slice: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.source_split == "test":
            out[row.id] = Split.TEST
        elif row.source_split == "train":
            by_slice[row.slice].append(row.id)
        else:
            raise InputError(f"row {row.id} has source_split {row.source_split!r}",
                             field="source_split")
    for slice_name in sorted(by_slice):
        ids = sorted(by_slice[slice_name])
        order = rng.permutation(len(ids))
        n_val = int(round(validation_fraction * len(ids)))
        for rank, idx in enumerate(order):
            out[ids[idx]] = Split.VALIDATION if rank < n_val else Split.TRAIN
    return out


def check_accounts_disjoint(rows: Sequence[TicketRow], assignment: Mapping[str, Split]) -> None:
    """Raise if any account appears in two splits (the leak the grouped split exists to stop)."""
    accounts: dict[Split, set[str]] = {s: set() for s in SPLITS}
    for row in rows:
        if row.account is not None:
            accounts[assignment[row.id]].add(row.account)
    for a, b in ((Split.TRAIN, Split.VALIDATION), (Split.TRAIN, Split.TEST),
                 (Split.VALIDATION, Split.TEST)):
        shared = accounts[a] & accounts[b]
        if shared:
            raise ValueError(f"accounts {sorted(shared)} are in both {a.value} and {b.value}")


def _ids_sha(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def build_manifest(dataset_name: str, dataset_version: str, rule: str, base_version: str,
                   params: Mapping[str, Any], rows: Sequence[TicketRow],
                   assignment: Mapping[str, Split]) -> SplitResult:
    splits: dict[str, Any] = {}
    for split in SPLITS:
        members = [row for row in rows if assignment[row.id] is split]
        ids = sorted(row.id for row in members)
        months = [row.month for row in members if row.month is not None]
        slices: dict[str, int] = defaultdict(int)
        for row in members:
            slices[row.slice] += 1
        splits[split.value] = {
            "count": len(ids),
            "positives": sum(row.gold for row in members),
            "accounts": sorted({row.account for row in members if row.account is not None}),
            "months": [min(months), max(months)] if months else None,
            "slices": dict(sorted(slices.items())),
            "ids_sha256": _ids_sha(ids),
            "ids": ids,
        }
    content = _ids_sha([f"{s}:{splits[s]['ids_sha256']}" for s in splits])
    manifest = {
        "split_manifest_version": f"{base_version}+{content[:12]}",
        "dataset": dataset_name,
        "dataset_version": dataset_version,
        "rule": rule,
        "params": dict(params),
        "content_sha256": content,
        "splits": splits,
    }
    return SplitResult(dict(assignment), manifest)


def split_dataset(dataset: Dataset) -> SplitResult:
    """Apply the dataset's documented split rule and freeze the result."""
    rule, params = dataset.split.rule, dict(dataset.split.params)
    if rule == "grouped_time":
        assignment = grouped_time_assignment(dataset.rows, **params)
        check_accounts_disjoint(dataset.rows, assignment)
    elif rule == "official_test_stratified_validation":
        assignment = stratified_validation_assignment(dataset.rows, **params)
    else:
        raise InputError(f"unknown split rule {rule!r}", field="split.rule")
    result = build_manifest(dataset.name, dataset.dataset_version, rule, dataset.split.version,
                            params, dataset.rows, assignment)
    for split in SPLITS:
        if result.manifest["splits"][split.value]["count"] == 0:
            raise InputError(f"split rule {rule} left {split.value} empty", field="split")
    return result
