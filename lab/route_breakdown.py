"""Where one `Router.route` call spends its time, stage by stage, beside a bare session.

    .venv/bin/python lab/route_breakdown.py BUNDLE [ARTIFACT[,ARTIFACT...]] \
        [TICKETS] [THREADS]

Routes the bundle's own test tickets (as `intakegate bench` does) and, for every ticket in the
same loop, times: the whole `Router.route`; `prepare_text` + the obfuscation check; the
segmenter, the tokenizer, each model `Run`, the lexical blend and the rest of `score_ticket`
(through timing wrappers passed to `score_ticket` itself); a bare session on the router's own
graph bytes (tokenizers truncated, whole ticket, one row); and the bare session on Optimum's
default dynamic int8 of the bundle's onnx-fp32 graph (what the bench's side-by-side column
times). Further artifacts after a comma add their own `Router.route` and bare session to the
same loop (`route:<artifact>`, `bare:<artifact>`): the bench times each artifact in its own
process, whose bare figure drifts between processes; here all share one. Blocks of 50 tickets
in rotating order, after a warm-up. Prints one JSON document (p50 and mean per stage, in ms)
and writes it to runs/lab/, named after the bundle, the artifacts, threads and the machine
(CPU model, int8 family, cores: the bench's results folder name).
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.benchmarks.inputs import cycle, load_texts
from intakegate.benchmarks.machine import cpu_family, describe, device_name
from intakegate.benchmarks.optimum_default import BareSession, build
from intakegate.scoring.encoding import prepare_text
from intakegate.runtime import Router
from intakegate.runtime.textguard import obfuscation
from intakegate.scoring.segments import sentencex_spans
from intakegate.scoring.ticket_score import score_ticket

OUT = Path(__file__).resolve().parents[1] / "runs" / "lab"  # outputs: never into the tree
BLOCK = 50


def artifact_file(verified: Any, name: str) -> Path:
    """The ONNX file of one of the bundle's artifacts (its manifest path: file or folder)."""
    path = Path(verified.root) / verified.manifest.artifacts[name].path
    return path / "model.onnx" if path.is_dir() else path


def _build_optimum(fp32: str, family: str) -> str:
    return build(Path(fp32), family).path


class Clock:
    """Accumulates seconds per stage for the ticket being timed."""

    def __init__(self) -> None:
        self.now: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.now[stage] = self.now.get(stage, 0.0) + seconds

    def timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - t0)
        return call


class TimedTokenizer:
    def __init__(self, tokenizer: Any, clock: Clock) -> None:
        self.encode_batch = clock.timed("tokenizer", tokenizer.encode_batch)


class TimedLexical:
    def __init__(self, lexical: Any, clock: Clock) -> None:
        self.scores = clock.timed("lexical", lexical.scores)


def main(bundle: str, artifacts: str = "onnx-int8", tickets: int = 2000,
         threads: int | None = None) -> None:
    artifact, *others = artifacts.split(",")
    router = Router(bundle, artifact=artifact, device="cpu", threads=threads,
                    allow_held_for_measurement=True)
    e = router.engine
    if e is None:
        raise SystemExit(f"{bundle}: router not ready: {router.health()['detail']}")
    texts = load_texts(e.verified).test
    family = cpu_family()
    fp32 = artifact_file(e.verified, "onnx-fp32")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:  # optimum imports torch: never beside the timings
        optimum_path = pool.apply(_build_optimum, (str(fp32), family))
    bare_optimum = BareSession(optimum_path, e.tokenizer_json, e.spec.policy.max_length,
                               e.threads)
    bare_ours = BareSession(str(artifact_file(e.verified, artifact)),
                            e.tokenizer_json, e.spec.policy.max_length, e.threads)
    tokenizer = router._tokenizer(e)
    clock = Clock()
    spec = e.spec
    if spec.blend is not None:
        spec = replace(spec, blend=replace(spec.blend, lexical=TimedLexical(spec.blend.lexical,
                                                                            clock)))
    logits = clock.timed("model_run", e.backend.logits)
    splitter = clock.timed("segmenter", sentencex_spans)
    timed_tok = TimedTokenizer(tokenizer, clock)
    rows: list[int] = []

    def stages(text: str) -> None:
        t0 = time.perf_counter()
        prepared = prepare_text(text, spec.policy)
        obfuscation(prepared.text or "")
        clock.add("prepare", time.perf_counter() - t0)
        t1 = time.perf_counter()
        scored = score_ticket(logits, timed_tok, prepared.text or "", spec, splitter=splitter)
        clock.add("score_ticket", time.perf_counter() - t1)
        rows.append(scored.rows)

    variants: dict[str, Callable[[str], Any]] = {
        "route": router.route, "stages": stages, "bare_ours": bare_ours,
        "bare_optimum": bare_optimum}
    for other in others:
        extra = Router(bundle, artifact=other, device="cpu", threads=threads,
                       allow_held_for_measurement=True)
        if extra.engine is None:
            raise SystemExit(f"{bundle}/{other}: router not ready: {extra.health()['detail']}")
        variants[f"route:{other}"] = extra.route
        variants[f"bare:{other}"] = BareSession(
            str(artifact_file(e.verified, other)), e.tokenizer_json, e.spec.policy.max_length,
            e.threads)
    for text in cycle(texts, 100):
        for fn in variants.values():
            fn(text)
    clock.now.clear()
    rows.clear()
    seconds: dict[str, list[float]] = {}
    work = cycle(texts, tickets, offset=100)
    names = list(variants)
    for b, start in enumerate(range(0, len(work), BLOCK)):
        chunk = work[start:start + BLOCK]
        for name in names[b % len(names):] + names[:b % len(names)]:
            for text in chunk:
                if name == "stages":
                    clock.now = {}
                    variants[name](text)
                    for stage, s in clock.now.items():
                        seconds.setdefault(stage, []).append(s)
                    continue
                t0 = time.perf_counter()
                variants[name](text)
                seconds.setdefault(name, []).append(time.perf_counter() - t0)
    inner = ("segmenter", "tokenizer", "model_run", "lexical")
    n = len(seconds["score_ticket"])
    rest = [seconds["score_ticket"][i] - sum(seconds.get(s, [0.0] * n)[i] for s in inner)
            for i in range(n)]
    seconds["score_ticket_rest"] = rest
    out: dict[str, Any] = {
        "bundle": e.bundle_version, "artifact": artifact, "others": others, "tickets": tickets,
        "threads": e.threads, "cpu_family": family, "machine": describe("cpu", e.threads),
        "segmentation": e.spec.segmentation.name, "rows_per_ticket": float(np.mean(rows)),
        "ms": {k: {"p50": round(statistics.median(v) * 1e3, 4),
                   "mean": round(statistics.fmean(v) * 1e3, 4)} for k, v in seconds.items()},
    }
    optimum = out["ms"]["bare_optimum"]["p50"]
    out["route_over_bare_optimum_p50"] = {
        name: round(out["ms"][key]["p50"] / optimum, 3)
        for name, key in [(artifact, "route"), *((o, f"route:{o}") for o in others)]}
    text = json.dumps(out, indent=1)
    print(text)
    name = (f"route-breakdown-{e.bundle_version}-{'+'.join([artifact, *others])}"
            f"-t{e.threads}-{device_name('cpu')}.json")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], *(args[1:2] or ["onnx-int8"]), *(int(a) for a in args[2:4]))
