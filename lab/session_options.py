"""Do onnxruntime's CPU session options change what one ticket costs through `score_ticket`?

    .venv/bin/python lab/session_options.py BUNDLE [ARTIFACT] [TICKETS]

The router builds its CPU session with `intra_op_num_threads` = min(4, cores) and onnxruntime's
defaults otherwise; among them, worker threads that spin after each `Run` (waiting for the next
op of the same `Run`, then for the next `Run`). One ticket is one `Run` here, followed by Python
(padding, checks, the blend, the decision) on a 2-core machine, so spinning may take the core
that Python needs. Each variant is its own session on the artifact's verified bytes, scoring
the bundle's test tickets through `score_ticket` (what the router calls), in blocks of 50
rotated between variants, after a warm-up; beside them the bare session on Optimum's default
dynamic int8 of the bundle's onnx-fp32 graph (the bench's side-by-side column). A variant that
changes any score is reported as such: the router may only use one that changes none.
Prints one JSON document (p50 and mean in ms) and writes it to runs/lab/.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import intakegate.runtime  # noqa: F401, I001 - before onnxruntime's telemetry (see README)
import numpy as np
import onnxruntime as ort

from intakegate.benchmarks.inputs import cycle, load_texts
from intakegate.benchmarks.machine import cpu_family, describe, device_name
from intakegate.benchmarks.optimum_default import BareSession, build
from intakegate.scoring.encoding import Windows, prepare_text
from intakegate.runtime import Router
from intakegate.scoring.ticket_score import score_ticket

OUT = Path(__file__).resolve().parents[1] / "runs" / "lab"  # outputs: never into the tree
BLOCK = 50
NO_SPIN = {"session.intra_op.allow_spinning": "0"}
# name -> (intra-op threads, None: the router's own; session config entries; encode one segment
# at a time in the calling thread)
VARIANTS: dict[str, tuple[int | None, dict[str, str], bool]] = {
    "router default": (None, {}, False),
    "no spinning": (None, NO_SPIN, False),
    "one thread": (1, {}, False),
    "one thread, no spinning": (1, NO_SPIN, False),
    "denormals as zero": (None, {"session.set_denormal_as_zero": "1"}, False),
    "encode one at a time": (None, {}, True),
    "encode one at a time, no spinning": (None, NO_SPIN, True),
}


class OneAtATime:
    """A tokenizer whose `encode_batch` encodes in the calling thread, one text after another."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode_batch(self, texts: list[str]) -> list[Any]:
        return [self.tokenizer.encode(t) for t in texts]


def artifact_file(verified: Any, name: str) -> Path:
    path = Path(verified.root) / verified.manifest.artifacts[name].path
    return path / "model.onnx" if path.is_dir() else path


def _build_optimum(fp32: str, family: str) -> str:
    return build(Path(fp32), family).path


def session_logits(model: bytes, threads: int, entries: dict[str, str]
                   ) -> Callable[[Windows], np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(model, sess_options=options,
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def logits(w: Windows) -> np.ndarray:
        return np.asarray(session.run(None, {n: getattr(w, n) for n in names})[0])
    return logits


def main(bundle: str, artifact: str = "onnx-int8", tickets: int = 2000) -> None:
    router = Router(bundle, artifact=artifact, device="cpu", allow_held_for_measurement=True)
    e = router.engine
    if e is None:
        raise SystemExit(f"{bundle}: router not ready: {router.health()['detail']}")
    texts = [prepare_text(t, e.spec.policy).text or "" for t in load_texts(e.verified).test]
    family = cpu_family()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:  # optimum imports torch: never beside the timings
        optimum_path = pool.apply(_build_optimum,
                                  (str(artifact_file(e.verified, "onnx-fp32")), family))
    model = artifact_file(e.verified, artifact).read_bytes()
    tokenizer = router._tokenizer(e)
    scorers: dict[str, Callable[[str], Any]] = {}
    for name, (threads, entries, one_at_a_time) in VARIANTS.items():
        logits = session_logits(model, threads or e.threads, entries)
        tok = OneAtATime(tokenizer) if one_at_a_time else tokenizer
        scorers[name] = (lambda fn, tk: lambda text: score_ticket(fn, tk, text, e.spec))(
            logits, tok)
    scorers["bare Optimum default"] = BareSession(optimum_path, e.tokenizer_json,
                                                  e.spec.policy.max_length, e.threads)
    scores: dict[str, list[float | None]] = {n: [] for n in VARIANTS}
    for text in cycle(texts, 100):
        for fn in scorers.values():
            fn(text)
    work = cycle(texts, tickets, offset=100)
    seconds: dict[str, list[float]] = {n: [] for n in scorers}
    names = list(scorers)
    for b, start in enumerate(range(0, len(work), BLOCK)):
        chunk = work[start:start + BLOCK]
        for name in names[b % len(names):] + names[:b % len(names)]:
            fn = scorers[name]
            for text in chunk:
                t0 = time.perf_counter()
                out = fn(text)
                seconds[name].append(time.perf_counter() - t0)
                if name in scores:
                    scores[name].append(out.score)
    reference = scores["router default"]
    optimum = statistics.median(seconds["bare Optimum default"])
    result: dict[str, Any] = {
        "bundle": e.bundle_version, "artifact": artifact, "tickets": tickets,
        "router_threads": e.threads, "cpu_family": family, "machine": describe("cpu", e.threads),
        "variants": {n: {"threads": VARIANTS[n][0] or e.threads, "config": VARIANTS[n][1],
                         "encode_one_at_a_time": VARIANTS[n][2]}
                     for n in VARIANTS},
        "ms": {n: {"p50": round(statistics.median(v) * 1e3, 4),
                   "mean": round(statistics.fmean(v) * 1e3, 4),
                   "over_bare_optimum_p50": round(statistics.median(v) / optimum, 3)}
               for n, v in seconds.items()},
        "scores_changed": {n: sum(a != b for a, b in zip(reference, s))
                           for n, s in scores.items()},
    }
    text = json.dumps(result, indent=1)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"session-options-{e.bundle_version}-{artifact}-{device_name('cpu')}.json").write_text(
        text + "\n", encoding="utf-8")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], *(args[1:2] or ["onnx-int8"]), *(int(a) for a in args[2:3]))
