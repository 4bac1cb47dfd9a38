"""Summarise the student search (student_search.sh) from its bundles' own receipts.

Per student: layers, teacher weight, the validation decision and its routine FP rate (from the
selection report), the threshold, and the two lowest required positives (composed included) (validation
only; the search keeps the test split closed). Beside them: the teacher's own figures. Writes
runs/lab/student-search.json.

    .venv/bin/python lab/student_summary.py runs/lab/student-search \
        bundles/refund-intake/refund-intake-minilm-v3
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summary(bundle: Path) -> dict[str, object]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    spec = json.loads((bundle / "receipt" / "spec.json").read_text())
    run = json.loads((bundle / "receipt" / "runs" / "torch-fp32.json").read_text())
    config = json.loads((bundle / "docs" / "training_config.json").read_text())
    gate = json.loads((bundle / "docs" / "gate_report.json").read_text())
    required = set(spec["required_slices"])
    lowest = sorted((r for r in run["rows"] if r["gold"] == 1 and r["slice"] in required),
                    key=lambda r: r["score"])[:2]
    teacher = config.get("teacher")
    return {"bundle": bundle.name,
            "student_layers": teacher["student_layers"] if teacher else None,
            "distill_weight": config["config"]["distill_weight"] if teacher else None,
            "decision": manifest["decision"], "reason": manifest["decision_reason"],
            "threshold": round(manifest["threshold"], 4),
            "segmentation": gate["segmentation"],
            "fp_rate": round(gate["false_positive_rate"], 4),
            "fp_single": round(gate["false_positive_rate_single"], 4),
            "fp_pairs": round(gate["false_positive_rate_composed"], 4),
            "lowest_required": [[r["fixture_id"], round(r["score"], 4)] for r in lowest]}


def main(search: str, teacher: str) -> None:
    rows = [summary(b) for b in sorted(Path(search).glob("bundles/*/student-*"))]
    rows.append(summary(Path(teacher)))
    out = Path(__file__).resolve().parents[1] / "runs" / "lab" / "student-search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
