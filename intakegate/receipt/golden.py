"""Golden self-test rows: a few receipt rows per artifact, with texts, checked at load time.

Train writes the reference artifact's block; export adds a block for each artifact it re-gates,
picked by the same rule from that artifact's own receipt scores (never inherited from fp32), and
a quantized artifact has one block per CPU family it was gated on (`golden_key`): its int8
scores differ by family. The runtime refuses an artifact whose golden scores drift beyond
tolerance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from intakegate.bundle.paths import GOLDEN
from intakegate.hardware import gate_cpu_family
from intakegate.jsonio import write_json
from intakegate.receipt.composed import parse_composed_id
from intakegate.receipt.shapes import parse_shape_id

GOLDEN_ROWS = 8
GOLDEN_COMPOSED_ROWS = 2


def golden_key(artifact: str, gated_with: str | None) -> str:
    """The golden block of an artifact's receipt: `onnx-int8@arm64` for a quantized artifact's
    receipt on one CPU family (its rows are that family's scores), else the artifact's name."""
    family = gate_cpu_family(gated_with)
    return f"{artifact}@{family}" if family else artifact


def is_block_of(key: str, artifact: str) -> bool:
    """The block is the artifact's own or one of its per-family blocks."""
    return key == artifact or key.startswith(f"{artifact}@")


def pick_golden_ids(scores: Mapping[str, float], texts: Mapping[str, str],
                    k: int = GOLDEN_ROWS) -> list[str]:
    """K fixture ids spread evenly over the score range (deterministic): k - 2 single tickets
    and 2 composed ones, each from the shortest quarter of its kind by text length.

    Why: every router load scores these rows. Both kinds keep the self-test on the whole
    scoring path (segments, windows, the max), and short rows keep the load cheap: on a 2-core
    CPU a 351-character composed row cost 0.42 s of a 1.3 s self-test, a 52-character one 6 ms.
    From the shorter half, refund-intake's int8 rows still needed 3-13 model rows a ticket and
    0.20-0.22 s of a 0.61 s pack cold start (Intel Xeon, 2 cores).
    """
    def shortest_quarter(ids: list[str], need: int) -> list[str]:
        """The shortest quarter, or the `need` shortest where the quarter has fewer."""
        by_length = sorted(ids, key=lambda fid: (len(texts[fid]), fid))
        return by_length[:max(need, (len(by_length) + 3) // 4)]

    known = [fid for fid in scores if fid in texts]
    derived = {fid for fid in known
               if parse_composed_id(fid) is not None or parse_shape_id(fid) is not None}
    composed = [fid for fid in known if fid in derived]  # joins and shape copies
    single = [fid for fid in known if fid not in derived]
    if not single:
        return _spread(shortest_quarter(composed, k), scores, k)
    n_composed = min(GOLDEN_COMPOSED_ROWS, len(composed), k - 1)
    return sorted(_spread(shortest_quarter(single, k - n_composed), scores, k - n_composed)
                  + _spread(shortest_quarter(composed, n_composed), scores, n_composed))


def _spread(ids: list[str], scores: Mapping[str, float], k: int) -> list[str]:
    if k <= 0:
        return []
    ordered = sorted(ids, key=lambda fid: (scores[fid], fid))
    if len(ordered) <= k:
        return ordered
    if k == 1:
        return [ordered[len(ordered) // 2]]
    step = (len(ordered) - 1) / (k - 1)
    return sorted({ordered[round(i * step)] for i in range(k)})


def read_golden(bundle_dir: Path) -> dict[str, Any]:
    path = bundle_dir / GOLDEN
    if not path.exists():
        return {"artifacts": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def set_golden_block(bundle_dir: Path, key: str, model_sha256: str,
                     rows: Sequence[Mapping[str, Any]], tolerance: float | None = None) -> None:
    """Write (or replace) one golden block (`golden_key`)."""
    doc = read_golden(bundle_dir)
    block: dict[str, Any] = {"model_sha256": model_sha256,
                             "rows": [{"fixture_id": r["fixture_id"], "text": r["text"],
                                       "score": float(r["score"])} for r in rows]}
    if tolerance is not None:
        block["tolerance"] = tolerance
    doc.setdefault("artifacts", {})[key] = block
    _write(bundle_dir, doc)


def drop_golden_blocks(bundle_dir: Path, artifact: str) -> bool:
    """Remove every block of `artifact` (a re-export makes a new model); True if any was."""
    doc = read_golden(bundle_dir)
    blocks = doc.get("artifacts", {})
    stale = [k for k in blocks if is_block_of(k, artifact)]
    for key in stale:
        del blocks[key]
    if stale:
        _write(bundle_dir, doc)
    return bool(stale)


def _write(bundle_dir: Path, doc: dict[str, Any]) -> None:
    (bundle_dir / GOLDEN).parent.mkdir(parents=True, exist_ok=True)
    write_json(bundle_dir / GOLDEN, doc)
