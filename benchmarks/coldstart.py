"""Cold start: a new process, from interpreter start to its first routing decision.

Each run spawns a fresh `python -c` that imports `intakegate.runtime`, loads the router (which
verifies every file's hash, binds the artifact to its receipt, builds the session, probes the
vocabulary and runs the golden self-test) and routes one ticket. The parent times from spawn to
the moment the decision line arrives on the pipe; the child reports its own import, load and
first-route split and its peak resident memory (`ru_maxrss`, and `VmHWM` where Linux has it),
read after the first decision, before it exits.

The load is also split into one span per step (`SPANS`): the child wraps the loader's own step
functions with a clock before it loads, so the very calls `Router.load` makes are timed and the
loader carries no timing code. A step the loader no longer has by that name is left out and its
time stays in `load_other`.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("intakegate.benchmarks")

# (span, module, function): the steps of `Router.load`, in load order.
SPANS = (
    ("resolve", "intakegate.runtime.router", "resolve_source"),
    ("signature", "intakegate.runtime.loader", "read_statement"),
    ("verify_hashes", "intakegate.runtime.loader", "verify_bundle"),
    ("bind_receipt", "intakegate.runtime.loader", "check_artifact"),
    ("no_pickle", "intakegate.runtime.loader", "check_no_pickle"),
    ("tokenizer", "intakegate.runtime.loader", "read_tokenizer"),
    ("segmenter_check", "intakegate.runtime.loader", "check_policy_segmenter"),
    ("lexical_model", "intakegate.runtime.loader", "read_blend"),
    ("session", "intakegate.runtime.loader", "build_backend"),
    ("vocab_probe", "intakegate.runtime.loader", "probe_vocabulary"),
    ("selftest", "intakegate.runtime.loader", "golden_self_test"),
)

CHILD = r"""
import time
T0 = time.perf_counter()
import json, sys
from intakegate.runtime import Router
T1 = time.perf_counter()
import importlib
SPENT = {}
def timed(span, fn):
    def call(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[span] = SPENT.get(span, 0.0) + time.perf_counter() - t
    return call
for span, module, name in json.loads(sys.argv[7]):
    mod = importlib.import_module(module)
    if callable(getattr(mod, name, None)):
        setattr(mod, name, timed(span, getattr(mod, name)))
bundle, artifact, device, threads, held, text = sys.argv[1:7]
T1b = time.perf_counter()
router = Router.load(bundle, artifact=artifact, device=device, threads=int(threads) or None,
                     allow_held_for_measurement=held == "1")
T2 = time.perf_counter()
decision = router.route(text)
T3 = time.perf_counter()
SPENT["load_other"] = (T2 - T1b) - sum(SPENT.values())
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
peak_mb = peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
hwm = None
try:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
except OSError:
    pass
print(json.dumps({"import_s": T1 - T0, "load_s": T2 - T1b, "first_route_s": T3 - T2,
                  "spans_s": {"import": T1 - T0, **SPENT, "first_decision": T3 - T2},
                  "ready": router.ready, "route": decision.route.value,
                  "reason": decision.reason.value, "peak_rss_mb": peak_mb, "vmhwm_mb": hwm,
                  "torch_imported": "torch" in sys.modules,
                  "dont_write_bytecode": bool(sys.flags.dont_write_bytecode)}), flush=True)
"""

# What a user would build by hand, from a new process to its first logits: onnxruntime and
# tokenizers only (no intakegate import, no checks), on Optimum's default int8 file.
BARE_CHILD = r"""
import time
T0 = time.perf_counter()
import json, sys
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
T1 = time.perf_counter()
model, tokenizer_file, max_length, threads, text = sys.argv[1:6]
options = ort.SessionOptions()
options.intra_op_num_threads = int(threads)
options.inter_op_num_threads = 1
session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
tokenizer = Tokenizer.from_file(tokenizer_file)
tokenizer.enable_truncation(max_length=int(max_length))
T2 = time.perf_counter()
enc = tokenizer.encode(text)
columns = dict(input_ids=enc.ids, attention_mask=enc.attention_mask, token_type_ids=enc.type_ids)
session.run(None, {i.name: np.asarray([columns[i.name]], dtype=np.int64)
                   for i in session.get_inputs()})
T3 = time.perf_counter()
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"import_s": T1 - T0, "load_s": T2 - T1, "first_route_s": T3 - T2,
                  "peak_rss_mb": peak / (1024.0 * (1024.0 if sys.platform == "darwin" else 1))}),
      flush=True)
"""


def _spawn(args: list[str], what: str, timeout_s: float) -> dict[str, Any]:
    """Run one child; wall time is spawn -> its one JSON line received."""
    # Bytecode as an installed wheel has it (compiled at install): a child that inherits
    # PYTHONDONTWRITEBYTECODE in a source checkout would recompile intakegate every time.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        wall = time.perf_counter() - start
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"cold start of {what} did not finish in {timeout_s}s") from None
    if proc.returncode != 0 or not line.strip():
        raise RuntimeError(f"cold start of {what} failed (exit {proc.returncode}): "
                           f"{(err or '').strip()[-500:]}")
    return {"process_to_first_decision_s": wall, **json.loads(line)}


def one_run(bundle: Path, artifact: str, device: str, threads: int | None, held: bool,
            text: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """One router child: a new process to its first routing decision."""
    return _spawn([sys.executable, "-c", CHILD, str(bundle), artifact, device,
                   str(threads or 0), "1" if held else "0", text, json.dumps(SPANS)],
                  artifact, timeout_s)


def bare_cold_start(model: Path, tokenizer_file: Path, max_length: int, threads: int,
                    text: str, runs: int) -> dict[str, Any]:
    """Median over `runs` new processes of a bare onnxruntime + tokenizers load and first
    logits (after one untimed process): the by-hand figure the router's cold start is read
    against, in the same run."""
    args = [sys.executable, "-c", BARE_CHILD, str(model), str(tokenizer_file), str(max_length),
            str(threads), text]
    _spawn(args, "a bare session", 300.0)
    results = [_spawn(args, "a bare session", 300.0) for _ in range(runs)]
    wall = [r["process_to_first_decision_s"] for r in results]
    return {"runs": runs, "median_s": round(statistics.median(wall), 4),
            "min_s": round(min(wall), 4), "max_s": round(max(wall), 4),
            "median_split_s": {k: round(statistics.median(r[k] for r in results), 4)
                               for k in ("import_s", "load_s", "first_route_s")},
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1)}


def median_spans(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per span, the median over the runs, in load order (import, load steps, first decision)."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    return {name: round(statistics.median(run.get(name, 0.0) for run in runs), 4)
            for name in names}


def cold_start(bundle: Path, artifact: str, device: str, threads: int | None, held: bool,
               text: str, runs: int) -> dict[str, Any]:
    """Median (and min/max) over `runs` fresh processes, and the peak RSS of those processes,
    after one untimed process that writes what bytecode is missing."""
    one_run(bundle, artifact, device, threads, held, text)
    results = []
    for i in range(runs):
        results.append(one_run(bundle, artifact, device, threads, held, text))
        log.info("%s cold start %d/%d: %.3fs to first decision, peak RSS %.0f MB", artifact,
                 i + 1, runs, results[-1]["process_to_first_decision_s"],
                 results[-1]["peak_rss_mb"])
    keys = ("process_to_first_decision_s", "import_s", "load_s", "first_route_s")
    rss = [r["peak_rss_mb"] for r in results]
    return {
        "runs": runs,
        "median_s": round(statistics.median(r[keys[0]] for r in results), 4),
        "min_s": round(min(r[keys[0]] for r in results), 4),
        "max_s": round(max(r[keys[0]] for r in results), 4),
        "median_split_s": {k: round(statistics.median(r[k] for r in results), 4)
                           for k in keys[1:]},
        "median_spans_s": median_spans([r["spans_s"] for r in results]),
        "peak_rss_mb": {"median": round(statistics.median(rss), 1), "max": round(max(rss), 1)},
        "ready": all(r["ready"] for r in results),
        "first_decision": {"route": results[0]["route"], "reason": results[0]["reason"]},
        "torch_imported": any(r["torch_imported"] for r in results),
        # The children's flag: False, since the parent's PYTHONDONTWRITEBYTECODE is not passed
        # on and a warm-up process writes missing bytecode before the timed ones.
        "dont_write_bytecode": any(r["dont_write_bytecode"] for r in results),
    }


def pack_cold_start(bundle: Path, artifact: str, device: str, threads: int | None, held: bool,
                    text: str, runs: int) -> dict[str, Any]:
    """`cold_start` of a slim pack of `artifact` (what a desktop client ships: it hashes only
    its own files), made from the bundle in a temporary directory; measurement-only where the
    artifact is held, so the pack stays held too."""
    from intakegate.bundle import Artifact
    from intakegate.bundle.pack import pack_bundle

    with tempfile.TemporaryDirectory(prefix="intakegate-pack-") as tmp:
        packed = pack_bundle(bundle, Artifact(artifact), Path(tmp) / "pack",
                             measurement_only=held)
        return {"files": packed.files, "size_mb": round(packed.size_bytes / 2 ** 20, 2),
                **cold_start(packed.out, artifact, device, threads, held, text, runs)}
