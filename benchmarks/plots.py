"""PNG charts of a benchmark: latency per artifact, throughput by batch size, soak over time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def _rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Measured artifacts, then baselines, as (label, block with latency and throughput)."""
    rows = [(name + (" (held)" if block["warm"]["mode"] == "measurement_only" else ""),
             block["warm"]) for name, block in results["artifacts"].items()
            if (block.get("warm") or {}).get("measured")]
    rows += [(f"{name} (baseline)", block) for name, block in results["baselines"].items()
             if block.get("measured")]
    return rows


def latency_chart(results: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars: p50 and p95 single-ticket latency per artifact (log scale)."""
    plt = _pyplot()
    rows = _rows(results)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(rows) + 2), 4.5))
    xs = range(len(rows))
    p50 = [r["latency"]["p50_ms"] for _, r in rows]
    p95 = [r["latency"]["p95_ms"] for _, r in rows]
    width = 0.38
    ax.bar([x - width / 2 for x in xs], p50, width, label="p50")
    ax.bar([x + width / 2 for x in xs], p95, width, label="p95")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([label for label, _ in rows], rotation=20, ha="right")
    ax.set_ylabel("ms per ticket (Router.route)")
    if p50 and min(p50) > 0:
        ax.set_yscale("log")
    ax.set_title(f"{results['bundle']['bundle_version']} on {results['machine']['device_name']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_chart(results: Mapping[str, Any], path: Path) -> Path:
    """Tickets per second by batch size, one line per artifact and baseline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, block in _rows(results):
        sizes = sorted(int(k) for k in block["throughput"])
        ax.plot(sizes, [block["throughput"][str(s)]["tickets_per_s"] for s in sizes],
                marker="o", label=label)
    ax.set_xlabel("batch size (Router.route_batch)")
    ax.set_ylabel("tickets / s")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(f"Throughput: {results['bundle']['bundle_version']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def soak_chart(result: Mapping[str, Any], path: Path) -> Path:
    """Per-window p50/p99 latency and RSS against tickets routed."""
    plt = _pyplot()
    windows = result["windows"]
    xs = [w["tickets"] for w in windows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(xs, [w["p50_ms"] for w in windows], marker=".", label="p50")
    top.plot(xs, [w["p99_ms"] for w in windows], marker=".", label="p99")
    top.set_ylabel("ms per ticket (window)")
    top.legend()
    bottom.plot(xs, [w["rss_mb"] for w in windows], marker=".", color="tab:red")
    bottom.axvline(result["warmup_tickets"], color="grey", linestyle="--", linewidth=1)
    bottom.set_ylabel("RSS (MB)")
    bottom.set_xlabel("tickets routed")
    top.set_title(f"Soak {result['artifact']}: {result['tickets']} tickets, RSS growth after "
                  f"warm-up {result['rss_growth_after_warmup_pct']:.2f}%")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
