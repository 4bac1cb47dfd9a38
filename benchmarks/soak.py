"""Soak: route N tickets through one router and watch latency and memory over time.

Tickets are single `Router.route` calls (the desktop client's pattern), cycling the bundle's
test texts, with a malformed input every 100th (None, blank, a lone surrogate, a bidi control,
over the character cap, bytes, spelled-out letters) so the refusal paths are soaked too. The run
is cut into windows: each window records its p50/p99 latency and the RSS at its end. RSS growth
is measured after warm-up (the end of the first `warmup_fraction` of tickets) to the end; a leak
shows as steady growth, allocator warm-up does not. Failures are decisions where the model gave
no answer (model_error, invalid_score, timeout, ...) and exceptions, which `route` must never
raise.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.benchmarks.latency import FAILURE_REASONS, load_router
from intakegate.benchmarks.stats import Progress, summarize_ms

log = logging.getLogger("intakegate.benchmarks")
MALFORMED: tuple[object, ...] = (None, "", "refund \ud800 please", "refund \u202eesaelp",
                                 "x" * 70000, b"bytes are not text", "i g n o r e  p r e v i o u s")


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc, else the peak from getrusage)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def open_fds() -> int | None:
    fd_dir = Path("/proc/self/fd")
    return len(os.listdir(fd_dir)) if fd_dir.exists() else None


def soak_tickets(texts: Sequence[str], n: int) -> list[object]:
    """Deterministic: test texts in order, a malformed input every 100th ticket."""
    return [MALFORMED[(i // 100) % len(MALFORMED)] if i % 100 == 99 else texts[i % len(texts)]
            for i in range(n)]


def slope_per_10k(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares MB per 10,000 tickets."""
    if len(xs) < 2:
        return None
    return round(float(np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0]) * 10000.0, 4)


def soak(bundle: str | Path, artifact: str, device: str, threads: int | None,
         texts: Sequence[str], n: int, windows: int = 20, warmup_fraction: float = 0.05
         ) -> dict[str, Any]:
    """The soak result for one artifact (runs in a worker process)."""
    rss_start = rss_mb()
    router, mode, why = load_router(bundle, artifact, device, threads)
    if router is None:
        return {"artifact": artifact, "measured": False, "mode": mode, "skip_reason": why}
    work = soak_tickets(texts, n)
    per_window = max(1, n // max(1, windows))
    warmup_end = max(per_window, int(n * warmup_fraction))
    latencies = np.zeros(n)
    reasons: Counter[str] = Counter()
    exceptions = 0
    samples: list[dict[str, Any]] = []
    rss_after_warmup: float | None = None
    progress = Progress(f"{artifact} soak", n)
    rss_loaded = rss_mb()
    start = time.perf_counter()
    window_start = 0
    for i, ticket in enumerate(work):
        t0 = time.perf_counter()
        try:
            decision = router.route(ticket, ticket_id=f"soak-{i}")
            reasons[decision.reason.value] += 1
        except Exception:  # noqa: BLE001 - route must never raise; count it if it does
            exceptions += 1
        latencies[i] = time.perf_counter() - t0
        done = i + 1
        if done == warmup_end:
            rss_after_warmup = rss_mb()
        if done % per_window == 0 or done == n:
            window = summarize_ms(latencies[window_start:done])
            samples.append({"tickets": done, "seconds": round(time.perf_counter() - start, 3),
                            "rss_mb": round(rss_mb(), 2), "p50_ms": window["p50_ms"],
                            "p99_ms": window["p99_ms"], "fds": open_fds(),
                            "py_threads": threading.active_count()})
            window_start = done
        progress.tick(done)
    elapsed = time.perf_counter() - start
    health = router.health()
    router.close()
    rss_end = samples[-1]["rss_mb"]
    base = rss_after_warmup if rss_after_warmup is not None else rss_loaded
    after = [s for s in samples if s["tickets"] >= warmup_end]
    failures = {k: v for k, v in reasons.items() if k in FAILURE_REASONS}
    return {
        "artifact": artifact, "measured": True, "mode": mode, "held_reason": why,
        "bundle_version": health["bundle_version"], "device": health["device"],
        "providers": health["providers"], "threads": health["threads"],
        "tickets": n, "seconds": round(elapsed, 2),
        "tickets_per_s": round(n / elapsed, 1) if elapsed > 0 else None,
        "latency": summarize_ms(latencies),
        "rss_mb": {"process_start": round(rss_start, 1), "router_loaded": round(rss_loaded, 1),
                   "after_warmup": round(base, 1), "end": round(rss_end, 1),
                   "max": round(max(s["rss_mb"] for s in samples), 1)},
        "warmup_tickets": warmup_end,
        "rss_growth_after_warmup_pct": round((rss_end - base) / base * 100.0, 3),
        "rss_slope_after_warmup_mb_per_10k": slope_per_10k(
            [s["tickets"] for s in after], [s["rss_mb"] for s in after]),
        "failures": {"count": sum(failures.values()) + exceptions, "by_reason": failures,
                     "exceptions": exceptions},
        "reasons": dict(reasons),
        "malformed_inputs": sum(1 for i in range(n) if i % 100 == 99),
        "torch_imported": "torch" in sys.modules,
        "windows": samples,
    }
