"""How often can the lesson's threshold rule meet a "no missed test positive" floor?

The rule pins the threshold at the lowest required validation positive. If test positives are
drawn like validation ones (exchangeable scores), the number K of m test positives that score
below the lowest of n validation positives has P(K = k) = m!/(m-k)! * n * (n+m-k-1)!/(n+m)!,
and E[K] = m / (n + 1), whatever the model. This prints those odds for a bundle's own counts
(single tickets: n from its validation receipt, m from its test report) beside what its test
split showed. The log-odds margin below the lowest positive lowers the odds of a miss; a
distribution shift between months raises them. Nothing is chosen from this: it sizes the
validation set a floor needs.

    .venv/bin/python lab/threshold_rule_odds.py bundles/refund-intake/refund-intake-minilm-v3 \
        bundles/banking77/b77-minilm-v3
"""

from __future__ import annotations

import json
import sys
from math import prod
from pathlib import Path


def p_exactly(n: int, m: int, k: int) -> float:
    return prod(m - i for i in range(k)) * n / prod(n + m - i for i in range(k + 1))


def n_for(m: int, floor: int, odds: float) -> int:
    """The smallest n with P(K <= floor) >= odds."""
    n = 1
    while sum(p_exactly(n, m, k) for k in range(floor + 1)) < odds:
        n += 1
    return n


def main(*bundles: str) -> None:
    for b in map(Path, bundles):
        spec = json.loads((b / "receipt" / "spec.json").read_text())
        run = json.loads((b / "receipt" / "runs" / "torch-fp32.json").read_text())
        test = json.loads((b / "docs" / "test_report.json").read_text())["encoder"]
        required = {s for s in spec["required_slices"] if not s.startswith("composed:")}
        n = sum(1 for r in run["rows"] if r["gold"] == 1 and r["slice"] in required)
        m = int(test["required_positives"])
        print(json.dumps({
            "bundle": b.name, "validation_required_positives": n,
            "test_required_positives": m, "expected_missed": round(m / (n + 1), 2),
            "p_0_missed": round(p_exactly(n, m, 0), 3),
            "p_at_most_2_missed": round(sum(p_exactly(n, m, k) for k in range(3)), 3),
            "validation_positives_for_p0_0.9": n_for(m, 0, 0.9),
            "test_required_missed_observed": test["required_missed"]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
