"""Cold start of several bundles or packs in one run, alternating, through the bench's own
`cold_start()` (fresh processes to a first decision; per-span medians).

    PYTHONDONTWRITEBYTECODE= .venv/bin/python lab/coldstart_packs.py \
        onnx-int8 2 5 PACK_A PACK_B

Leave PYTHONDONTWRITEBYTECODE unset to measure what an installed wheel (compiled bytecode)
gets; set, every process recompiles intakegate's modules.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from intakegate.benchmarks.coldstart import cold_start

TEXT = "Where is my package? Tracking has not moved since Monday."


def main(artifact: str, rounds: str, runs: str, *bundles: str) -> None:
    for i in range(int(rounds)):
        for bundle in bundles:
            r = cold_start(Path(bundle), artifact, "cpu", None, False, TEXT, int(runs))
            print(json.dumps({"round": i + 1, "bundle": bundle, "median_s": r["median_s"],
                              "spans_s": r["median_spans_s"],
                              "dont_write_bytecode": r["dont_write_bytecode"]}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
