"""Warm latency and throughput of one artifact through `Router.route` / `Router.route_batch`.

Runs inside a worker process (see `worker.py`): the router is loaded the way a client loads it;
a held artifact, which the router refuses, is loaded again in measurement-only mode so its
speed is still known, and every one of its decisions stays `human_review_now` / `artifact_held`.
Timed calls are the public ones, so tokenization, the input policy, the checks on the model's
output and the routing rule are all inside the numbers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.benchmarks.inputs import cycle
from intakegate.benchmarks.stats import Progress, summarize_ms

log = logging.getLogger("intakegate.benchmarks")
# Reasons that mean the model did not give an answer: a timed run with any of them is not a
# measurement of the model (the fallback path is much faster), so they are reported as failures.
FAILURE_REASONS = frozenset({"model_error", "invalid_score", "timeout", "model_unavailable",
                             "bundle_integrity"})


@dataclass(frozen=True)
class WarmSettings:
    """How much to route: single-ticket calls after warm-up, then tickets per batch size."""

    tickets: int = 1000
    warmup: int = 50
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    throughput_tickets: int = 512


def load_router(bundle: str | Path, artifact: str, device: str, threads: int | None
                ) -> tuple[Any, str, str | None]:
    """(router, mode, why) where mode is `serving`, `measurement_only` or `refused`.

    The serving load comes first, exactly as `intakegate route` would do it; only a refusal for
    `artifact_held` is retried with the measurement-only option.
    """
    from intakegate.runtime import Router

    router = Router.load(bundle, artifact=artifact, device=device, threads=threads)
    if router.ready:
        return router, "serving", None
    health = router.health()
    why = f"{health['reason']}: {health['detail']}"
    router.close()
    if health["reason"] != "artifact_held":
        return None, "refused", why
    log.info("%s is refused for serving (%s); loading it for measurement only", artifact, why)
    router = Router.load(bundle, artifact=artifact, device=device, threads=threads,
                         allow_held_for_measurement=True)
    if not router.ready:
        health = router.health()
        return None, "refused", f"{health['reason']}: {health['detail']}"
    return router, "measurement_only", why


def count_decisions(decisions: Sequence[Any], reasons: Counter[str], labelled: list[int]
                    ) -> None:
    """Tally reasons; `labelled[0]` counts decisions carrying the measurement-only label."""
    for d in decisions:
        reasons[d.reason.value] += 1
        if d.detail.startswith("measurement_only:"):
            labelled[0] += 1


def timed_singles(label: str, call: Callable[[str], Any], texts: Sequence[str],
                  settings: WarmSettings, on_result: Callable[[Any], None] | None = None
                  ) -> list[float]:
    """Warm up, then the wall time of `call(text)` for each of `settings.tickets` cycled
    tickets (the router and the baselines are timed by this one loop)."""
    for text in cycle(tuple(texts), settings.warmup):
        call(text)
    work = cycle(tuple(texts), settings.tickets, offset=settings.warmup)
    seconds: list[float] = []
    progress = Progress(f"{label} single-ticket latency", len(work))
    clock = time.perf_counter
    for i, text in enumerate(work):
        t0 = clock()
        result = call(text)
        seconds.append(clock() - t0)
        if on_result is not None:
            on_result(result)
        progress.tick(i + 1)
    return seconds


def timed_batches(label: str, call: Callable[[list[str]], Any], texts: Sequence[str],
                  settings: WarmSettings, on_result: Callable[[Any], None] | None = None
                  ) -> dict[str, Any]:
    """Tickets per second of `call(batch)` for each batch size (same tickets each)."""
    out: dict[str, Any] = {}
    n = max(settings.throughput_tickets, max(settings.batch_sizes))
    work = cycle(tuple(texts), n)
    for size in settings.batch_sizes:
        call(work[:size])  # warm this batch shape
        progress = Progress(f"{label} throughput batch {size}", n)
        start = time.perf_counter()
        for i in range(0, n, size):
            result = call(work[i:i + size])
            if on_result is not None:
                on_result(result)
            progress.tick(min(i + size, n))
        elapsed = time.perf_counter() - start
        out[str(size)] = {"batch_size": size, "tickets": n, "seconds": round(elapsed, 4),
                          "tickets_per_s": round(n / elapsed, 2) if elapsed > 0 else None}
    return out


def single_ticket(router: Any, texts: Sequence[str], settings: WarmSettings,
                  reasons: Counter[str], labelled: list[int]) -> dict[str, Any]:
    """Per-call wall time of `router.route(text)` over `settings.tickets` test tickets."""
    return summarize_ms(timed_singles(router.artifact, router.route, texts, settings,
                                      lambda d: count_decisions([d], reasons, labelled)))


def throughput(router: Any, texts: Sequence[str], settings: WarmSettings,
               reasons: Counter[str], labelled: list[int]) -> dict[str, Any]:
    """Tickets per second through `route_batch` for each batch size (same tickets each)."""
    return timed_batches(router.artifact, router.route_batch, texts, settings,
                         lambda ds: count_decisions(ds, reasons, labelled))


def segment_cost(router: Any, texts: Sequence[str], settings: WarmSettings) -> dict[str, Any]:
    """The cost of segment scoring in this very process: `score_ticket` with the bundle's
    segmentation against whole-ticket scoring (what the bundle did before segments), same
    backend, same prepared tickets, the two timed alternately so drift hits both alike."""
    from dataclasses import replace

    from tokenizers import Tokenizer

    from intakegate.scoring.encoding import prepare_text
    from intakegate.scoring.segments import SegmentPolicy
    from intakegate.scoring.ticket_score import score_ticket

    engine = router.engine
    if engine is None:
        return {"measured": False}
    tokenizer = Tokenizer.from_str(engine.tokenizer_json)
    specs = {"segments": engine.spec,
             "whole_ticket": replace(engine.spec, policy=replace(
                 engine.spec.policy, segmentation=SegmentPolicy.whole_only()))}
    prepared = [p for p in (prepare_text(t, engine.spec.policy).text for t in texts) if p]
    work = cycle(tuple(prepared), min(settings.tickets, 1000))
    seconds: dict[str, list[float]] = {k: [] for k in specs}
    rows: dict[str, list[int]] = {k: [] for k in specs}
    clock = time.perf_counter
    for text in cycle(tuple(prepared), settings.warmup):
        for spec in specs.values():
            score_ticket(engine.backend.logits, tokenizer, text, spec)
    progress = Progress(f"{router.artifact} segment cost", len(work))
    for i, text in enumerate(work):
        for name, spec in specs.items():
            t0 = clock()
            scored = score_ticket(engine.backend.logits, tokenizer, text, spec)
            seconds[name].append(clock() - t0)
            rows[name].append(scored.rows)
        progress.tick(i + 1)
    out: dict[str, Any] = {"measured": True, "segmentation": engine.spec.segmentation.name}
    for name in specs:
        out[name] = {**summarize_ms(seconds[name]),
                     "rows_per_ticket": round(sum(rows[name]) / len(rows[name]), 3)}
    out["p50_ratio"] = round(out["segments"]["p50_ms"] / out["whole_ticket"]["p50_ms"], 3)
    return out


def versus_optimum_block(router: Any, texts: Sequence[str], settings: WarmSettings,
                         optimum: dict[str, Any] | None) -> dict[str, Any]:
    """The Optimum-default column for this artifact, or why there is none."""
    if optimum is None or not optimum.get("path"):
        why = (optimum or {}).get("skip_reason") or "not requested"
        return {"measured": False, "skip_reason": why}
    from intakegate.benchmarks.optimum_default import versus_optimum

    try:
        return versus_optimum(router, texts, settings.tickets, settings.warmup, optimum)
    except Exception as exc:  # noqa: BLE001 - the column is reported missing, with why
        return {"measured": False, "skip_reason": f"{type(exc).__name__}: {str(exc)[:300]}"}


def measure_artifact(bundle: str | Path, artifact: str, device: str, threads: int | None,
                     texts: Sequence[str], settings: WarmSettings,
                     optimum: dict[str, Any] | None = None) -> dict[str, Any]:
    """The warm block of one artifact in results.json (or why it was not measured).

    `optimum` (a built Optimum default int8, `optimum_default.build`) adds the side-by-side
    column: the router against a bare session on it, interleaved in this process."""
    from intakegate.errors import MissingExtraError
    from intakegate.runtime.onnx_backend import DeviceUnavailable

    load_start = time.perf_counter()
    try:
        router, mode, why = load_router(bundle, artifact, device, threads)
    except (DeviceUnavailable, MissingExtraError, ValueError) as exc:
        return {"measured": False, "mode": "skipped", "skip_reason": str(exc)}
    if router is None:
        return {"measured": False, "mode": mode, "skip_reason": why}
    load_s = time.perf_counter() - load_start
    health = router.health()
    reasons: Counter[str] = Counter()
    labelled = [0]
    try:
        latency = single_ticket(router, texts, settings, reasons, labelled)
        rates = throughput(router, texts, settings, reasons, labelled)
        segments = segment_cost(router, texts, settings)
        versus = versus_optimum_block(router, texts, settings, optimum)
    finally:
        router.close()
    decided = sum(reasons.values())
    return {
        "measured": True, "mode": mode, "held_reason": why,
        "device": health["device"], "providers": health["providers"],
        "threads": health["threads"], "selftest": health["selftest"],
        "load_s_in_worker": round(load_s, 4),
        "latency": latency, "throughput": rates, "segment_cost": segments,
        "vs_optimum_default": versus,
        "decisions": {"total": decided, "reasons": dict(reasons),
                      "measurement_only_labelled": labelled[0],
                      "failures": sum(v for k, v in reasons.items() if k in FAILURE_REASONS)},
    }
