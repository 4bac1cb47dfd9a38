"""The selection study table of a bundle: one row per (training shares, segmentation), its best
encoder weight by the selection rule's key, from the bundle's `selection_report.json`.

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


def _key(c: dict[str, Any]) -> tuple[float, ...]:
    held = c["held"]
    worst = max(held["overhead"] or 0.0, held.get("shape_overhead") or 0.0)
    return (held["missed"], round(held["fp_single"], 6), round(worst, 6), -c["encoder_weight"])


def rows(report: dict[str, Any]) -> list[str]:
    chosen = report["chosen"]
    kinds = sorted({k for s in report["shares"] for c in s["candidates"]
                    for k in c.get("shape_fp") or {}})
    head = ["Composed share", "Shape share", "Segmentation", "Best weight", "Held misses",
            "Held single FP", "Held overhead (pairs / worst shape)", "All: single FP",
            "All: pairs FP (overhead)", *(f"All: {k} FP" for k in kinds), "Rows per ticket"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for share in report["shares"]:
        for seg in dict.fromkeys(c["segmentation"] for c in share["candidates"]):
            c = min((c for c in share["candidates"] if c["segmentation"] == seg), key=_key)
            is_chosen = (share["composed_share"], share.get("shape_share", 0.0), seg,
                         c["encoder_weight"]) == (chosen["composed_share"],
                                                  chosen.get("shape_share", 0.0),
                                                  chosen["segmentation"],
                                                  chosen["encoder_weight"])
            held = c["held"]
            name = f"**{seg}**" if is_chosen else seg
            cells = [f"{share['composed_share']:g}", f"{share.get('shape_share', 0.0):g}", name,
                     f"{c['encoder_weight']:g}", f"{held['missed']} of {held['sources']}",
                     _pct(held["fp_single"]),
                     f"{_signed(held['overhead'])} / {_signed(held.get('shape_overhead'))}",
                     _pct(c["fp_single"]),
                     f"{_pct(c['fp_pair'])} ({_signed(c['composition_overhead'])})",
                     *(_pct((c.get("shape_fp") or {}).get(k)) for k in kinds),
                     f"{c['rows_per_ticket']:.2f}"]
            out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> None:
    folder = Path(sys.argv[1])
    report = json.loads((folder / "selection_report.json").read_text())
    print(f"**{folder.name}**\n")
    print("\n".join(rows(report)))


if __name__ == "__main__":
    main()
