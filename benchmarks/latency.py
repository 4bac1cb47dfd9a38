"""Cold start and single-ticket latency of the local router, per artifact.

    python benchmarks/latency.py /tmp/soak/minilm --artifacts onnx-fp32 onnx-int8 \
        --out benchmarks/results/latency-minilm.json

Cold start is "new process to first decision": a fresh interpreter imports the runtime, loads
and verifies the bundle (hashes, receipt binding, session, vocabulary probe, golden self-test)
and routes one ticket; the parent measures from spawn to the printed decision, and the child
reports import, load and first-call times separately. The CLI's cold start
(`intakegate route BUNDLE TEXT`) is measured the same way. Warm latency is `Router.route` on one
ticket at a time over the bundle's validation texts, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # see benchmarks/soak.py: the editable install needs the root
TEXT = "FastShip delivered my tablet after the return window closed. Please make an exception."
COLD = """
import json, sys, time
t0 = time.perf_counter()
from intakegate.runtime import Router
t1 = time.perf_counter()
router = Router.load(sys.argv[1], artifact=sys.argv[2])
t2 = time.perf_counter()
d = router.route(sys.argv[3])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_route_s": t3 - t2,
                  "route": d.route.value, "ready": router.ready,
                  "torch": "torch" in sys.modules}), flush=True)
"""


def cold_start(bundle: Path, artifact: str, repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD, str(bundle), artifact, TEXT],
                             capture_output=True, text=True, cwd=REPO, check=True)
        wall = time.perf_counter() - start
        child = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append({"process_to_first_decision_s": wall, **child})
    keys = ("process_to_first_decision_s", "import_s", "load_s", "first_route_s")
    return {"median": {k: round(statistics.median(r[k] for r in runs), 4) for k in keys},
            "min": {k: round(min(r[k] for r in runs), 4) for k in keys},
            "ready": all(r["ready"] for r in runs), "torch_imported": any(r["torch"] for r in runs)}


def cli_cold_start(bundle: Path, artifact: str, repeats: int) -> dict[str, float]:
    exe = Path(sys.executable).with_name("intakegate")
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(exe), "route", str(bundle), "--artifact", artifact, TEXT],
                       capture_output=True, text=True, cwd=REPO, check=True)
        walls.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(walls), 4), "min_s": round(min(walls), 4)}


def warm_latency(bundle: Path, artifact: str, rounds: int) -> dict[str, Any]:
    from intakegate.runtime import Router
    from tests.runtime_helpers import validation_rows

    texts = [r.text for r in validation_rows(bundle)]
    router = Router.load(bundle, artifact=artifact)
    for t in texts[:20]:
        router.route(t)
    samples = []
    for _ in range(rounds):
        for t in texts:
            t0 = time.perf_counter()
            router.route(t)
            samples.append(time.perf_counter() - t0)
    long_text = " ".join(" ".join(texts).split()[:700])
    long_samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        d = router.route(long_text)
        long_samples.append(time.perf_counter() - t0)
    ms = np.asarray(samples) * 1000
    return {"tickets": len(samples), "threads": router.health()["threads"],
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "long_ticket": {"words": 700, "windows": d.windows,
                            "p50_ms": round(float(np.median(long_samples)) * 1000, 3)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--artifacts", nargs="+", default=["onnx-fp32", "onnx-int8"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with open("/proc/loadavg") as handle:
        load_before = handle.read().split()[:3]
    result: dict[str, Any] = {
        "bundle": str(args.bundle),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "loadavg_before": load_before},
        "artifacts": {}}
    for artifact in args.artifacts:
        result["artifacts"][artifact] = {
            "cold_start": cold_start(args.bundle, artifact, args.repeats),
            "cli_cold_start": cli_cold_start(args.bundle, artifact, args.repeats),
            "warm_single_ticket": warm_latency(args.bundle, artifact, args.rounds),
        }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
