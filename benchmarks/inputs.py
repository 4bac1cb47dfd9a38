"""The tickets a benchmark routes: the bundle's own test split, checked against its manifest.

Timing depends on ticket length (tokens per window, windows per ticket), so a benchmark routes
the test rows of the very dataset version and split the bundle was gated on, which train stores
in the bundle; no dataset is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intakegate.errors import InputError


@dataclass(frozen=True)
class BenchTexts:
    """Test texts to route, train rows to fit the TF-IDF baseline on, and where they came from."""

    test: tuple[str, ...]
    train_rows: tuple[Any, ...]  # intakegate.contract.dataset.TicketRow
    baseline_keywords: tuple[str, ...]
    dataset: str
    dataset_version: str
    split_manifest_version: str


def load_texts(verified: Any) -> BenchTexts:
    """The bundle's own test rows (`eval/rows.json`, written by train and hashed in the
    manifest); an InputError when the bundle lacks them or they are not of its split."""
    from intakegate.bundle import BundleError
    from intakegate.bundle.paths import EVAL_ROWS
    from intakegate.receipt.fixtures import parse_eval_rows

    manifest = verified.manifest
    try:
        rows = parse_eval_rows(verified.read(EVAL_ROWS))
    except BundleError as exc:
        raise InputError(f"the bundle has no benchmark rows ({exc}); bench a full bundle, or "
                         f"a pack made --with-fixtures", path=str(verified.root)) from None
    if rows.dataset_version != manifest.dataset_version:
        raise InputError(f"{EVAL_ROWS} holds rows of {rows.dataset_version}, the bundle was "
                         f"built on {manifest.dataset_version}: its test rows are not this "
                         f"bundle's", path=str(verified.root))
    if rows.split_manifest_version != manifest.split_manifest_version:
        raise InputError(f"split {rows.split_manifest_version} != the bundle's "
                         f"{manifest.split_manifest_version}", path=str(verified.root))
    if not rows.test:
        raise InputError(f"{EVAL_ROWS} has no test rows to route", path=str(verified.root))
    return BenchTexts(tuple(r.text for r in rows.test), rows.train, rows.baseline_keywords,
                      rows.dataset, rows.dataset_version, rows.split_manifest_version)


def cycle(texts: tuple[str, ...] | list[str], n: int, offset: int = 0) -> list[str]:
    """`n` texts taken in order, wrapping around (so every row is used before any repeats)."""
    return [texts[(offset + i) % len(texts)] for i in range(n)]
