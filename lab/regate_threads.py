"""How should a re-gate use the cores? One ticket's `Run` on 2 threads, or tickets side by side?

Scores the first N receipt fixtures of a bundle's onnx-int8 artifact three ways, in one process:
one ticket at a time on a session with 2 intra-op threads (the router's single-ticket setting on
a 2-core machine), two tickets at a time on a session with 1 thread each (what `intakegate gate`
does by default since `intakegate/parallel.py`), and one ticket at a time on 1 thread. Prints
the seconds of each (compare as ratios within one run) and whether the scores are identical.

    .venv/bin/python lab/regate_threads.py bundles/refund-intake/refund-intake-minilm-v3 400
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import intakegate.runtime  # noqa: F401 - before onnxruntime's telemetry (see README)
from intakegate.bundle import verify_bundle
from intakegate.export.regate import load_inventory, scoring_inputs
from intakegate.hardware import detect_cpu_family
from intakegate.runtime.onnx_backend import OnnxLogits
from intakegate.scoring.ticket_score import score_texts


def main(bundle_dir: str, n: str = "400") -> None:
    bundle = verify_bundle(Path(bundle_dir))
    m = bundle.manifest
    inventory = load_inventory(bundle)
    tokenizer, spec = scoring_inputs(bundle)
    texts = [inventory.texts[f] for f in inventory.spec.fixture_ids][:int(n)]
    model = bundle.read(m.artifacts["onnx-int8"].path)
    scores = {}
    for threads, workers in ((2, 1), (1, 2), (1, 1)):
        logits = OnnxLogits(model, "cpu", threads=threads)
        started = time.perf_counter()
        scored = score_texts(logits, tokenizer, texts, spec, workers=workers)
        seconds = time.perf_counter() - started
        scores[(threads, workers)] = [s.score for s in scored]
        print(json.dumps({"intra_op_threads": threads, "tickets_at_once": workers,
                          "tickets": len(texts), "seconds": round(seconds, 1),
                          "cpu_family": detect_cpu_family().value}), flush=True)
    first = next(iter(scores.values()))
    print(json.dumps({"identical_scores": all(v == first for v in scores.values())}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
