"""Golden self-test rows: a few receipt rows per artifact, with texts, checked at load time.

Train writes the reference artifact's block; export adds a block for each artifact it re-gates,
with that artifact's own receipt scores (never inherited from fp32). The runtime refuses an
artifact whose golden scores drift beyond tolerance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from intakegate.bundle.paths import GOLDEN
from intakegate.jsonio import write_json

GOLDEN_ROWS = 8


def pick_golden_ids(scores: Mapping[str, float], k: int = GOLDEN_ROWS) -> list[str]:
    """K fixture ids spread evenly over the score range (deterministic)."""
    ordered = sorted(scores, key=lambda fid: (scores[fid], fid))
    if len(ordered) <= k:
        return ordered
    step = (len(ordered) - 1) / (k - 1)
    return sorted({ordered[round(i * step)] for i in range(k)})


def read_golden(bundle_dir: Path) -> dict[str, Any]:
    path = bundle_dir / GOLDEN
    if not path.exists():
        return {"artifacts": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def set_golden_block(bundle_dir: Path, artifact: str, model_sha256: str,
                     rows: Sequence[Mapping[str, Any]], tolerance: float | None = None) -> None:
    """Write (or replace) one artifact's golden block."""
    doc = read_golden(bundle_dir)
    block: dict[str, Any] = {"model_sha256": model_sha256,
                             "rows": [{"fixture_id": r["fixture_id"], "text": r["text"],
                                       "score": float(r["score"])} for r in rows]}
    if tolerance is not None:
        block["tolerance"] = tolerance
    doc.setdefault("artifacts", {})[artifact] = block
    (bundle_dir / GOLDEN).parent.mkdir(parents=True, exist_ok=True)
    write_json(bundle_dir / GOLDEN, doc)
