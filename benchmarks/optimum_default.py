"""The side-by-side column: what a user would build by hand, timed in the same run.

A user who wants a fast MiniLM classifier without intakegate takes the fp32 ONNX graph, runs
Optimum's default dynamic int8 recipe for their CPU, and calls a bare onnxruntime session on
`tokenizers` output. This module builds exactly that from the bundle's own `onnx-fp32` bytes
(once, cached outside the bundle: a gated artifact path is never written), and times it against
`Router.route` on the same tickets in the same process, interleaved in blocks whose order
rotates, so load drift hits both sides alike. Every router figure is then a ratio to it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.benchmarks.inputs import cycle
from intakegate.benchmarks.stats import summarize_ms

log = logging.getLogger("intakegate.benchmarks")
CACHE_ENV = "INTAKEGATE_BENCH_CACHE"
# The CPU family (benchmarks.machine.cpu_family) -> Optimum's own default dynamic int8 config.
RECIPES = {"avx512_vnni": "avx512_vnni", "arm64": "arm64", "avx2": "avx2",
           "x86_no_avx2": "avx2", "unknown": "avx2"}


@dataclass(frozen=True)
class OptimumRecipe:
    """Which Optimum default was used, so the column can be rebuilt elsewhere."""

    cpu_family: str
    config: str  # the AutoQuantizationConfig constructor called

    @staticmethod
    def for_family(family: str) -> OptimumRecipe:
        name = RECIPES.get(family, "avx2")
        return OptimumRecipe(family, f"AutoQuantizationConfig.{name}(is_static=False, "
                                     f"per_channel=True)")


@dataclass(frozen=True)
class BuiltModel:
    """An Optimum int8 graph on disk (in the cache), and what it was built from."""

    path: str
    fp32_sha256: str
    recipe: OptimumRecipe
    optimum_version: str | None
    cached: bool


def cache_root() -> Path:
    """`INTAKEGATE_BENCH_CACHE`, else a folder in the system temp dir (never a bundle)."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "intakegate-bench")


def build(fp32_model: Path, family: str, root: Path | None = None) -> BuiltModel:
    """Optimum's default dynamic int8 of `fp32_model`, built once per (graph, recipe, version).

    Imports optimum (and so torch): run it in its own worker process, not beside a timing.
    """
    from importlib.metadata import PackageNotFoundError, version

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    try:
        optimum_version: str | None = version("optimum-onnx")
    except PackageNotFoundError:
        optimum_version = None
    recipe = OptimumRecipe.for_family(family)
    data = fp32_model.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    key = hashlib.sha256(f"{digest}|{recipe.config}|{optimum_version}".encode()).hexdigest()
    folder = (root or cache_root()) / "optimum-default-int8" / key[:24]
    out = folder / "int8" / "model_quantized.onnx"
    if out.exists():
        return BuiltModel(str(out), digest, recipe, optimum_version, True)
    (folder / "fp32").mkdir(parents=True, exist_ok=True)
    (folder / "fp32" / "model.onnx").write_bytes(data)
    config = getattr(AutoQuantizationConfig, RECIPES.get(family, "avx2"))(
        is_static=False, per_channel=True)
    quantizer = ORTQuantizer.from_pretrained(folder / "fp32", file_name="model.onnx")
    quantizer.quantize(config, save_dir=folder / "int8")
    if not out.exists():
        raise RuntimeError(f"Optimum wrote no {out.name} in {out.parent}")
    return BuiltModel(str(out), digest, recipe, optimum_version, False)


class BareSession:
    """What a user writes by hand: tokenizers (truncated to the model's window) straight into an
    onnxruntime session with the router's thread settings; no policy, no segments, no checks."""

    def __init__(self, model_path: str, tokenizer_json: str, max_length: int,
                 threads: int) -> None:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model_path, sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.enable_truncation(max_length=max_length)
        self.np = np

    def __call__(self, text: str) -> Any:
        enc = self.tokenizer.encode(text)
        cols = {"input_ids": enc.ids, "attention_mask": enc.attention_mask,
                "token_type_ids": enc.type_ids}
        feed = {n: self.np.asarray([cols[n]], dtype=self.np.int64) for n in self.names}
        return self.session.run(None, feed)[0]


def interleaved(calls: dict[str, Callable[[str], Any]], texts: Sequence[str], tickets: int,
                warmup: int, block: int = 50) -> dict[str, list[float]]:
    """Per-call seconds of each variant on the same tickets: blocks of `block` tickets, each
    block run by every variant in turn, the order rotating by one each block."""
    names = list(calls)
    for text in cycle(tuple(texts), warmup):
        for fn in calls.values():
            fn(text)
    work = cycle(tuple(texts), tickets, offset=warmup)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter
    for b, start in enumerate(range(0, len(work), block)):
        chunk = work[start:start + block]
        for name in names[b % len(names):] + names[:b % len(names)]:
            fn = calls[name]
            for text in chunk:
                t0 = clock()
                fn(text)
                seconds[name].append(clock() - t0)
    return seconds


def versus_optimum(router: Any, texts: Sequence[str], tickets: int, warmup: int,
                   built: dict[str, Any]) -> dict[str, Any]:
    """`Router.route` against a bare session on Optimum's default int8, same process."""
    engine = router.engine
    bare = BareSession(built["path"], engine.tokenizer_json, engine.spec.policy.max_length,
                       engine.threads or 1)
    seconds = interleaved({"router": router.route, "optimum_default_bare": bare}, texts,
                          tickets, warmup)
    router_ms, bare_ms = summarize_ms(seconds["router"]), summarize_ms(
        seconds["optimum_default_bare"])
    return {"measured": True, **built, "block_size": 50, "order": "rotated per block",
            "segmentation": engine.spec.segmentation.name,
            "router": router_ms, "optimum_default_bare": bare_ms,
            "p50_ratio": round(router_ms["p50_ms"] / bare_ms["p50_ms"], 3),
            "p95_ratio": round(router_ms["p95_ms"] / bare_ms["p95_ms"], 3)}
