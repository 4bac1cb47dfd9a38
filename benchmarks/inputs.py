"""The tickets a benchmark routes: the bundle's own test split, checked against its manifest.

Timing depends on ticket length (tokens per window, windows per ticket), so a benchmark routes
the test rows of the very dataset version and split the bundle was gated on, and refuses to run
on anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from intakegate.errors import InputError


@dataclass(frozen=True)
class BenchTexts:
    """Test texts to route, train rows to fit the TF-IDF baseline on, and where they came from."""

    test: tuple[str, ...]
    train_rows: tuple[Any, ...]  # intakegate.dataset.TicketRow
    baseline_keywords: tuple[str, ...]
    dataset: str
    dataset_version: str
    split_manifest_version: str


def load_texts(manifest: Mapping[str, Any]) -> BenchTexts:
    """The bundle dataset's test split; an InputError when the data is not the bundle's."""
    from intakegate.dataset import load_dataset
    from intakegate.split import split_dataset
    from intakegate.vocab import Split

    ds = load_dataset(manifest["dataset"])
    if ds.dataset_version != manifest["dataset_version"]:
        raise InputError(f"dataset {manifest['dataset']} is {ds.dataset_version}, the bundle was "
                         f"built on {manifest['dataset_version']}: its test rows are not this "
                         f"bundle's")
    split = split_dataset(ds)
    if split.version != manifest["split_manifest_version"]:
        raise InputError(f"split {split.version} != the bundle's "
                         f"{manifest['split_manifest_version']}")
    test = split.rows(ds, Split.TEST)
    train = split.rows(ds, Split.TRAIN)
    if not test:
        raise InputError(f"dataset {manifest['dataset']} has no test rows to route")
    return BenchTexts(tuple(r.text for r in test), tuple(train), tuple(ds.baseline_keywords),
                      ds.name,
                      ds.dataset_version, split.version)


def cycle(texts: tuple[str, ...] | list[str], n: int, offset: int = 0) -> list[str]:
    """`n` texts taken in order, wrapping around (so every row is used before any repeats)."""
    return [texts[(offset + i) % len(texts)] for i in range(n)]
