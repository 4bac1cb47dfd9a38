"""Where one model `Run` spends its time: onnxruntime's own profiler, per op type.

    .venv/bin/python lab/run_profile.py BUNDLE [ARTIFACT] [TICKETS]

The route breakdown (`route_breakdown.py`) says the router's model `Run`s cost more than the
bare session's one row; this says why, from inside the session. It captures the exact batches
`score_ticket` sends for the bundle's first TICKETS test tickets (segment rows, grouped and
padded as served), then replays them through a profiling session on the artifact's verified
bytes, and the whole tickets (one row each, as a user would) through a profiling session on
Optimum's default dynamic int8 of the bundle's onnx-fp32 graph. Both sessions use the
router's thread settings and are optimized at load as the router's is. From the profile JSON:
mean `Run` wall time, the part spent inside kernels, and the kernel time per op type, with
tokens (real and padded) per `Run`. Writes the summary to runs/lab/, named after the
bundle, the artifact and the machine.

The profiler costs something per node, so a graph with many small nodes (Optimum's default:
279 against the fused export's 56) is slowed far more than one with few: compare wall times
within one graph, and kernel time per op type across graphs, never profiled wall time across
graphs (`route_breakdown.py` has the unprofiled figures).
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import intakegate.runtime  # noqa: F401, I001 - before onnxruntime's telemetry (see README)
import numpy as np
import onnxruntime as ort

from intakegate.benchmarks.inputs import load_texts
from intakegate.benchmarks.machine import cpu_family, describe, device_name
from intakegate.scoring.encoding import Windows, padded, prepare_text
from intakegate.runtime import Router
from intakegate.scoring.ticket_score import score_ticket
from route_breakdown import _build_optimum, artifact_file  # this folder: run as a script

OUT = Path(__file__).resolve().parents[1] / "runs" / "lab"  # outputs: never into the tree
WARMUP = 50


def profiled_runs(model: bytes | str, threads: int, feeds: list[dict[str, np.ndarray]]
                  ) -> dict[str, Any]:
    """Replay `feeds` (after a warm-up of the first WARMUP) through a profiling session."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "run")
        session = ort.InferenceSession(model, sess_options=options,
                                       providers=["CPUExecutionProvider"])
        for feed in [*feeds[:WARMUP], *feeds]:
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    runs = runs[WARMUP:]
    first = runs[0]["ts"] if runs else 0
    kernels = [e for e in events if e.get("cat") == "Node"
               and e.get("name", "").endswith("_kernel_time") and e["ts"] >= first]
    per_op: dict[str, float] = defaultdict(float)
    for e in kernels:
        per_op[e.get("args", {}).get("op_name", "?")] += e["dur"]
    n = len(runs)
    wall = [r["dur"] for r in runs]
    kernel_us = sum(per_op.values()) / n
    nodes_per_run = len(kernels) / n
    return {
        "runs": n,
        "run_us": {"p50": statistics.median(wall), "mean": round(statistics.fmean(wall), 1)},
        "kernel_us_mean": round(kernel_us, 1),
        "outside_kernels_us_mean": round(statistics.fmean(wall) - kernel_us, 1),
        "nodes_per_run": round(nodes_per_run, 1),
        "kernel_us_per_op_type_mean": {op: round(us / n, 1) for op, us in
                                       sorted(per_op.items(), key=lambda kv: -kv[1])},
    }


def feed_of(w: Windows, names: list[str]) -> dict[str, np.ndarray]:
    return {name: getattr(w, name) for name in names}


def main(bundle: str, artifact: str = "onnx-int8", tickets: int = 1000) -> None:
    router = Router(bundle, artifact=artifact, device="cpu", allow_held_for_measurement=True)
    e = router.engine
    if e is None:
        raise SystemExit(f"{bundle}: router not ready: {router.health()['detail']}")
    texts = list(load_texts(e.verified).test)[:tickets]
    family = cpu_family()
    names = e.backend.input_names
    batches: list[dict[str, np.ndarray]] = []
    real_tokens: list[int] = []
    per_ticket_runs: list[int] = []
    tokenizer = router._tokenizer(e)

    def capture(w: Windows) -> Any:
        batches.append(feed_of(w, names))
        real_tokens.append(int(w.attention_mask.sum()))
        return e.backend.logits(w)

    for text in texts:
        before = len(batches)
        prepared = prepare_text(text, e.spec.policy)
        if prepared.text is not None:
            score_ticket(capture, tokenizer, prepared.text, e.spec)
        per_ticket_runs.append(len(batches) - before)
    whole = tokenizer.encode_batch([prepare_text(t, e.spec.policy).text or "" for t in texts])
    whole_rows = [padded([w], (0,), (1,)) for w in whole]  # one row each, as a user would
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:  # optimum imports torch: never beside the timings
        optimum_path = pool.apply(_build_optimum,
                                  (str(artifact_file(e.verified, "onnx-fp32")), family))
    optimum_names = [i.name for i in ort.InferenceSession(
        optimum_path, providers=["CPUExecutionProvider"]).get_inputs()]
    ours = profiled_runs(str(artifact_file(e.verified, artifact)), e.threads, batches)
    ours_whole = profiled_runs(str(artifact_file(e.verified, artifact)), e.threads,
                               [feed_of(w, names) for w in whole_rows])
    optimum = profiled_runs(optimum_path, e.threads,
                            [feed_of(w, optimum_names) for w in whole_rows])
    out = {
        "bundle": e.bundle_version, "artifact": artifact, "tickets": len(texts),
        "threads": e.threads, "cpu_family": family, "machine": describe("cpu", e.threads),
        "segmentation": e.spec.segmentation.name,
        "runs_per_ticket": round(statistics.fmean(per_ticket_runs), 3),
        "tokens_per_run": {"real": round(statistics.fmean(real_tokens), 1),
                           "padded": round(statistics.fmean(
                               int(b["input_ids"].size) for b in batches), 1)},
        "whole_ticket_tokens": round(statistics.fmean(len(w.ids) for w in whole), 1),
        "router_runs": ours,
        "whole_ticket_on_artifact": ours_whole,
        "whole_ticket_on_optimum_default": optimum,
    }
    text = json.dumps(out, indent=1)
    print(text)
    name = f"run-profile-{e.bundle_version}-{artifact}-{device_name('cpu')}.json"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], *(args[1:2] or ["onnx-int8"]), *(int(a) for a in args[2:3]))
