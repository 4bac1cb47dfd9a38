"""What one model `Run` costs per input shape, for each ONNX artifact and Optimum's default.

    .venv/bin/python lab/run_shapes.py BUNDLE [ARTIFACT[,ARTIFACT...]] [REPS] \
        [--optimum-from OTHER_BUNDLE]

Why: the route breakdown times whole tickets, whose shapes mix; this separates the model's cost
per `Run` from its cost per token, per artifact, on this CPU. Every artifact's verified bytes
and the bare Optimum-default dynamic int8 of an onnx-fp32 graph (the bundle's own; with
`--optimum-from`, another bundle's, e.g. a student's teacher: what a user would build by hand)
get the same feeds (random in-vocabulary ids, full attention) for each (rows, tokens) shape, in
one process with the router's thread settings, blocks of REPS runs rotated between the models
after a warm-up. Banking77's median ticket is one row of 13 tokens on `sent2+swin6/3over12`.
Writes JSON and a PNG (p50 ms against tokens per `Run`) to runs/lab/, named after the
bundle and the machine.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.benchmarks.machine import cpu_family, describe, device_name
from intakegate.bundle import verify_bundle
from intakegate.bundle.paths import TOKENIZER
from intakegate.runtime.onnx_backend import default_threads
from route_breakdown import _build_optimum, artifact_file  # this folder: run as a script

OUT = Path(__file__).resolve().parents[1] / "runs" / "lab"  # outputs: never into the tree
SHAPES = ((1, 8), (1, 13), (1, 16), (1, 24), (1, 32), (1, 64), (2, 16), (3, 24), (4, 36))
BLOCKS = 12
OPTIMUM = "optimum-default"


def session(path: str, threads: int) -> Any:
    """A session as the router and the bench's bare column build theirs."""
    import onnxruntime as ort  # after intakegate.runtime, which sets up its telemetry opt-out

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def feed(sess: Any, rows: int, tokens: int, tokenizer: Any,
         rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random ids from the bundle's vocabulary, framed as the tokenizer frames a ticket."""
    first, last = tokenizer.encode("").ids  # [CLS] ... [SEP] for a BERT tokenizer
    ids = rng.integers(1000, tokenizer.get_vocab_size(), size=(rows, tokens), dtype=np.int64)
    ids[:, 0], ids[:, -1] = first, last
    cols = {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids)}
    return {i.name: cols[i.name] for i in sess.get_inputs()}


def main(bundle: str, artifacts: str = "onnx-int8", reps: int = 25,
         optimum_from: str | None = None) -> None:
    verified = verify_bundle(Path(bundle))
    threads = default_threads()
    family = cpu_family()
    source = verify_bundle(Path(optimum_from)) if optimum_from else verified
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:  # optimum imports torch: never beside the timings
        optimum_path = pool.apply(_build_optimum,
                                  (str(artifact_file(source, "onnx-fp32")), family))
    paths = {name: str(artifact_file(verified, name)) for name in artifacts.split(",")}
    paths[OPTIMUM] = optimum_path
    sessions = {name: session(path, threads) for name, path in paths.items()}
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(verified.read(TOKENIZER).decode("utf-8"))
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {name: {} for name in sessions}
    for rows, tokens in SHAPES:
        feeds = {name: feed(s, rows, tokens, tokenizer, rng) for name, s in sessions.items()}
        for name, s in sessions.items():
            for _ in range(reps):
                s.run(None, feeds[name])
        seconds: dict[str, list[float]] = {name: [] for name in sessions}
        names = list(sessions)
        for b in range(BLOCKS):
            for name in names[b % len(names):] + names[:b % len(names)]:
                s, f = sessions[name], feeds[name]
                for _ in range(reps):
                    t0 = time.perf_counter()
                    s.run(None, f)
                    seconds[name].append(time.perf_counter() - t0)
        for name, values in seconds.items():
            results[name][f"{rows}x{tokens}"] = round(statistics.median(values) * 1e3, 4)
        print(f"{rows}x{tokens}", {n: results[n][f"{rows}x{tokens}"] for n in names},
              flush=True)
    ratios = {name: {shape: round(ms / results[OPTIMUM][shape], 3)
                     for shape, ms in per_shape.items()}
              for name, per_shape in results.items() if name != OPTIMUM}
    out: dict[str, Any] = {
        "bundle": verified.manifest.bundle_version, "artifacts": list(paths),
        "optimum_default_of": source.manifest.bundle_version, "threads": threads,
        "cpu_family": family, "machine": describe("cpu", threads), "reps_per_block": reps,
        "blocks": BLOCKS, "p50_ms": results, "over_optimum_default_p50": ratios}
    stem = f"run-shapes-{verified.manifest.bundle_version}-{device_name('cpu')}"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{stem}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    plot(results, OUT / f"{stem}.png", out["bundle"], out["optimum_default_of"])
    print(json.dumps(ratios, indent=1))


def plot(results: dict[str, dict[str, float]], path: Path, bundle: str, optimum_of: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, per_shape in results.items():
        points = sorted((int(shape.split("x")[1]), ms) for shape, ms in per_shape.items()
                        if shape.startswith("1x"))
        label = f"{name} ({optimum_of})" if name == OPTIMUM else name
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xlabel("tokens in one row")
    ax.set_ylabel("p50 ms per Run")
    ax.set_title(f"{bundle}: one Run per shape, {device_name('cpu')}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    args = sys.argv[1:]
    other = None
    if "--optimum-from" in args:
        at = args.index("--optimum-from")
        other = args[at + 1]
        del args[at:at + 2]
    main(args[0], *(args[1:2] or ["onnx-int8"]), *(int(a) for a in args[2:3]),
         optimum_from=other)
