"""Would an offline-optimized ONNX graph cut cold start? Session creation in fresh processes,
alternating, for a bundle's int8 graph as shipped and for the copy onnxruntime saves after its
own ORT_ENABLE_EXTENDED pass (`SessionOptions.optimized_model_filepath`), each loaded at
ORT_ENABLE_ALL (what the router does) and at ORT_DISABLE_ALL, and the same graph in onnxruntime's
flatbuffer ORT format (`onnxruntime.tools.convert_onnx_models_to_ort`, optimized at conversion),
loaded at ORT_DISABLE_ALL.

    .venv/bin/python lab/offline_optimized_session.py \
        bundles/refund-intake/refund-intake-minilm-v3/model/onnx-int8/model.onnx 7

Prints one JSON line per (graph, level) with the median seconds of a fresh process's
`InferenceSession(...)` call (import excluded). Nothing in the bundle is changed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import sys, time, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 2
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[2])
start = time.perf_counter()
ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
print(time.perf_counter() - start)
"""


def save_optimized(source: Path, out: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def save_ort_format(source: Path, work: Path) -> Path:
    """The ORT-format copy (`.ort`), written by onnxruntime's own converter beside a copy."""
    copy = work / "ort_format.onnx"
    copy.write_bytes(source.read_bytes())
    subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort",
                    str(copy), "--optimization_style", "Fixed"], check=True, capture_output=True)
    return copy.with_suffix(".ort")


def fresh_session_s(graph: Path, level: str) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, str(graph), level], check=True,
                          capture_output=True, text=True)
    return float(done.stdout.strip())


def main(graph: str, runs: str) -> None:
    with tempfile.TemporaryDirectory() as work:
        optimized = Path(work) / "extended.onnx"
        save_optimized(Path(graph), optimized)
        variants = [(name, path, level) for name, path in (("shipped", Path(graph)),
                                                           ("offline_extended", optimized))
                    for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL")]
        variants.append(("ort_format", save_ort_format(Path(graph), Path(work)),
                         "ORT_DISABLE_ALL"))
        seconds: dict[tuple[str, str], list[float]] = {(n, lv): [] for n, _, lv in variants}
        for _ in range(int(runs)):
            for name, path, level in variants:
                seconds[(name, level)].append(fresh_session_s(path, level))
        for (name, level), values in seconds.items():
            print(json.dumps({"graph": name, "level": level, "runs": len(values),
                              "median_session_s": round(statistics.median(values), 4)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
