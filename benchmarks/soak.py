"""Soak run: route many tickets through one router and record RSS, file descriptors and threads.

    # once: a copy of a bundle with ONNX artifacts (until `intakegate export` lands)
    python benchmarks/soak.py prepare bundles/refund-intake/minilm-v1 /tmp/soak/minilm
    # the soak itself, in a fresh process that never imports torch
    python benchmarks/soak.py run /tmp/soak/minilm --artifact onnx-int8 --tickets 50000

Tickets are single calls to `Router.route` (the desktop client's pattern), drawn from the
bundle's validation texts and stretched to 1..~1,000 words, with a malformed input every 100th
(None, blank, lone surrogate, bidi control, over the char cap, bytes, spelled-out letters).
RSS, open fds and threads are sampled every `--sample-every` tickets; the result records the
least-squares RSS slope over the last half of the run. If RSS cannot be read, the run fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Run from anywhere: with the editable install, `intakegate` is only a regular package when the
# repository root is on sys.path (otherwise `from intakegate.runtime import Router` fails).
sys.path.insert(0, str(REPO))
MALFORMED: list[object] = [None, "", "refund \ud800 please", "refund \u202eesaelp",
                           "x" * 70000, b"bytes are not text", "i g n o r e  p r e v i o u s"]
log = logging.getLogger("soak")


def rss_mb() -> float:
    """Resident set size from /proc (Linux); raises when it cannot be read."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")


def os_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def validation_texts(bundle: Path) -> list[str]:
    from tests.runtime_helpers import validation_rows

    return [r.text for r in validation_rows(bundle)]


def tickets(texts: list[str], n: int, seed: int = 0) -> list[object]:
    """Deterministic mix: mostly short tickets, 5% long ones (several windows), 1% malformed."""
    rng = random.Random(seed)
    words = " ".join(texts).split()
    out: list[object] = []
    for i in range(n):
        if i % 100 == 99:
            out.append(MALFORMED[(i // 100) % len(MALFORMED)])
        elif rng.random() < 0.05:
            start = rng.randrange(len(words))
            k = rng.randint(260, 1000)
            out.append(" ".join(words[(start + j) % len(words)] for j in range(k)))
        else:
            base = rng.choice(texts)
            out.append(base if rng.random() < 0.7 else f"{base} {rng.choice(texts)}")
    return out


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope dy/dx."""
    if len(xs) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0])


def run(bundle: Path, artifact: str, n: int, sample_every: int, threads: int | None,
        out: Path | None) -> dict[str, Any]:
    from intakegate.runtime import Router

    texts = validation_texts(bundle)
    load_start = time.perf_counter()
    router = Router.load(bundle, artifact=artifact, threads=threads)
    load_s = time.perf_counter() - load_start
    if not router.ready:
        raise SystemExit(f"router not ready: {router.health()}")
    work = tickets(texts, n)
    samples: list[dict[str, float]] = []
    latencies = np.zeros(n)
    reasons: Counter[str] = Counter()
    routes: Counter[str] = Counter()
    start = time.perf_counter()
    samples.append({"tickets": 0, "seconds": 0.0, "rss_mb": rss_mb(), "fds": open_fds(),
                    "threads": os_threads(), "py_threads": threading.active_count()})
    for i, text in enumerate(work):
        t0 = time.perf_counter()
        d = router.route(text, ticket_id=f"soak-{i}")
        latencies[i] = time.perf_counter() - t0
        reasons[d.reason.value] += 1
        routes[d.route.value] += 1
        if (i + 1) % sample_every == 0:
            samples.append({"tickets": i + 1, "seconds": time.perf_counter() - start,
                            "rss_mb": rss_mb(), "fds": open_fds(), "threads": os_threads(),
                            "py_threads": threading.active_count()})
            if (i + 1) % (sample_every * 10) == 0:
                log.info("%d tickets, rss %.1f MB", i + 1, samples[-1]["rss_mb"])
    elapsed = time.perf_counter() - start
    half = samples[len(samples) // 2:]
    quarter = samples[3 * len(samples) // 4:]
    per_ticket = slope([s["tickets"] for s in half], [s["rss_mb"] for s in half])
    per_second = slope([s["seconds"] for s in half], [s["rss_mb"] for s in half])
    ms = latencies * 1000.0
    result = {
        "bundle": str(bundle), "bundle_version": router.bundle_version, "artifact": artifact,
        "device": router.device, "providers": list(router.providers),
        "threads": router.health()["threads"], "tickets": n, "load_seconds": round(load_s, 3),
        "seconds": round(elapsed, 1), "tickets_per_second": round(n / elapsed, 1),
        "latency_ms": {q: round(float(np.percentile(ms, p)), 3)
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "rss_mb": {"start": round(samples[0]["rss_mb"], 1), "end": round(samples[-1]["rss_mb"], 1),
                   "max": round(max(s["rss_mb"] for s in samples), 1),
                   "after_first_sample": round(samples[1]["rss_mb"], 1) if len(samples) > 1
                   else None},
        "rss_slope_last_half_mb_per_10k_tickets": round(per_ticket * 10000, 4),
        "rss_slope_last_half_mb_per_hour": round(per_second * 3600, 3),
        "rss_slope_last_quarter_mb_per_hour": round(slope(
            [s["seconds"] for s in quarter], [s["rss_mb"] for s in quarter]) * 3600, 3),
        "fds": {"start": samples[0]["fds"], "end": samples[-1]["fds"],
                "max": max(s["fds"] for s in samples)},
        "os_threads": {"start": samples[0]["threads"], "end": samples[-1]["threads"],
                       "max": max(s["threads"] for s in samples)},
        "reasons": dict(reasons), "routes": dict(routes),
        "torch_imported": "torch" in sys.modules,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "samples": samples,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def prepare(src: Path, dst: Path) -> None:
    """Copy a bundle and add onnx-fp32 / onnx-int8 the way export will (needs torch)."""
    from tests.runtime_helpers import add_onnx_artifacts, copy_bundle

    if dst.exists():
        raise SystemExit(f"{dst} exists")
    dst.parent.mkdir(parents=True, exist_ok=True)
    add_onnx_artifacts(copy_bundle(src, dst.parent, dst.name))
    print(f"prepared {dst}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    r = sub.add_parser("run")
    r.add_argument("bundle", type=Path)
    r.add_argument("--artifact", default="onnx-int8")
    r.add_argument("--tickets", type=int, default=50000)
    r.add_argument("--sample-every", type=int, default=500)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.cmd == "prepare":
        prepare(args.src, args.dst)
        return
    result = run(args.bundle, args.artifact, args.tickets, args.sample_every, args.threads,
                 args.out)
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
