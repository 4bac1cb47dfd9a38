"""The selection study table of a bundle: one row per (training shares, segmentation, encoder
weight), from the bundle's `selection_report.json`, with whether it meets the receipt's limits
(`gate_report.json`: FP budget, composition and shape maxima) on all of validation.

Usage: .venv/bin/python lab/selection_table.py reports/<dataset>/bundles/<bundle>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _meets(c: dict[str, Any], gate: dict[str, Any]) -> bool:
    pairs = [(c["fp_single"], gate.get("fp_budget")),
             (c["composition_overhead"], gate.get("max_composition_overhead")),
             (c.get("shape_overhead"), gate.get("max_shape_overhead"))]
    return all(limit is None or value is None or value <= limit for value, limit in pairs)


def rows(report: dict[str, Any], gate: dict[str, Any]) -> list[str]:
    chosen = report["chosen"]
    kinds = sorted({k for s in report["shares"] for c in s["candidates"]
                    for k in c.get("shape_fp") or {}})
    head = ["Composed share", "Segment share", "Shape share", "Segmentation", "Weight", "Held misses",
            "Held single FP", "Held overhead (pairs / worst shape)", "All: single FP",
            "All: pairs FP (overhead)", *(f"All: {k} FP" for k in kinds), "Meets limits",
            "Rows per ticket"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for share in report["shares"]:
        for c in share["candidates"]:
            seg = c["segmentation"]
            is_chosen = (share["composed_share"], share.get("shape_share", 0.0), seg,
                         c["encoder_weight"]) == (chosen["composed_share"],
                                                  chosen.get("shape_share", 0.0),
                                                  chosen["segmentation"],
                                                  chosen["encoder_weight"])
            held = c["held"]
            name = f"**{seg}**" if is_chosen else seg
            cells = [f"{share['composed_share']:g}", f"{share.get('segment_share', 0.0):g}",
                     f"{share.get('shape_share', 0.0):g}", name,
                     f"{c['encoder_weight']:g}", f"{held['missed']} of {held['sources']}",
                     _pct(held["fp_single"]),
                     f"{_signed(held['overhead'])} / {_signed(held.get('shape_overhead'))}",
                     _pct(c["fp_single"]),
                     f"{_pct(c['fp_pair'])} ({_signed(c['composition_overhead'])})",
                     *(_pct((c.get("shape_fp") or {}).get(k)) for k in kinds),
                     "yes" if _meets(c, gate) else "no", f"{c['rows_per_ticket']:.2f}"]
            out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> None:
    folder = Path(sys.argv[1])
    report = json.loads((folder / "selection_report.json").read_text())
    gate_path = folder / "gate_report.json"
    gate = json.loads(gate_path.read_text()) if gate_path.exists() else {}
    print("\n".join(rows(report, gate)))


if __name__ == "__main__":
    main()
