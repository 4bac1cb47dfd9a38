"""Shared fixtures: paths to the shipped examples and small datasets written in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "seed"
SEED_RUN_ORDER = ["intake_bundle_v1", "intake_bundle_v2", "intake_bundle_incomplete",
                  "intake_bundle_padded", "intake_bundle_duplicated", "intake_bundle_drifted"]


@pytest.fixture()
def seed_run_paths() -> list[Path]:
    return [SEED / "runs" / f"{name}.json" for name in SEED_RUN_ORDER]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def guide_path() -> Path:
    return REPO / "data" / "refund-intake" / "label_guide.json"
