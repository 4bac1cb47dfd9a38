"""Ratios, target checks and the Markdown table of a benchmark run.

Ratios are always against torch-fp32 eager measured in the same run on the same machine, so a
busy or slow machine moves both sides; a ratio against a number from another run is not made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REFERENCE = "torch-fp32"
# The targets; reported as met or not, never used to change a measurement.
TARGETS = {"onnx_int8_p50_speedup_min": 5.0, "onnx_int8_p50_ms_max": 1.5,
           "onnx_int8_cold_start_s_max": 0.6, "peak_rss_mb_max": 250.0,
           "soak_rss_growth_pct_max": 5.0}
# Issue 15: floor and target, for each int8 artifact measured.
SPEED_LEVELS = {"floor": {"p50_vs_optimum_default_max": 0.8, "pack_cold_start_s_max": 0.35},
                "target": {"p50_vs_optimum_default_max": 0.5, "pack_cold_start_s_max": 0.2}}
INT8_ARTIFACTS = ("onnx-int8", "onnx-int8-vnni")


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return round(num / den, 3)


def versus(block: Mapping[str, Any], reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """Speed-ups of `block` over the reference: >1 means faster than torch-fp32 eager."""
    if not reference or not block.get("measured"):
        return {"reference": REFERENCE, "available": False}
    lat, ref = block["latency"], reference["latency"]
    return {
        "reference": REFERENCE, "available": True,
        "p50_speedup": _ratio(ref["p50_ms"], lat["p50_ms"]),
        "p95_speedup": _ratio(ref["p95_ms"], lat["p95_ms"]),
        "throughput_ratio": {size: _ratio(t["tickets_per_s"],
                                          reference["throughput"].get(size, {}).get(
                                              "tickets_per_s"))
                             for size, t in block["throughput"].items()},
    }


def add_ratios(results: dict[str, Any]) -> None:
    """Fill `vs_torch_fp32` on every artifact and baseline block, in place."""
    ref_block = results["artifacts"].get(REFERENCE, {}).get("warm")
    reference = ref_block if ref_block and ref_block.get("measured") else None
    for block in results["artifacts"].values():
        block["vs_torch_fp32"] = versus(block.get("warm") or {}, reference)
    for block in results["baselines"].values():
        block["vs_torch_fp32"] = versus(block, reference)


def target_checks(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's speed targets against this run (None: not measured here)."""
    int8 = results["artifacts"].get("onnx-int8", {})
    warm = int8.get("warm") or {}
    cold = int8.get("cold_start") or {}
    ratios = int8.get("vs_torch_fp32") or {}
    p50 = warm.get("latency", {}).get("p50_ms") if warm.get("measured") else None
    checks = [
        ("onnx-int8 p50 speed-up over torch-fp32 eager", ratios.get("p50_speedup"), ">=",
         TARGETS["onnx_int8_p50_speedup_min"]),
        ("onnx-int8 p50 ms (Router.route)", p50, "<=", TARGETS["onnx_int8_p50_ms_max"]),
        ("onnx-int8 cold start s (median)", cold.get("median_s"), "<=",
         TARGETS["onnx_int8_cold_start_s_max"]),
        ("onnx-int8 cold-start peak RSS MB", (cold.get("peak_rss_mb") or {}).get("max"), "<=",
         TARGETS["peak_rss_mb_max"]),
    ]
    for artifact in INT8_ARTIFACTS:
        block = results["artifacts"].get(artifact) or {}
        if not block.get("warm"):
            continue
        versus = block["warm"].get("vs_optimum_default") or {}
        pack = block.get("pack_cold_start") or {}
        for level, limits in SPEED_LEVELS.items():
            checks += [
                (f"{artifact} Router.route p50 / bare Optimum-default p50 ({level})",
                 versus.get("p50_ratio"), "<=", limits["p50_vs_optimum_default_max"]),
                (f"{artifact} pack cold start s, median ({level})", pack.get("median_s"), "<=",
                 limits["pack_cold_start_s_max"])]
    out = []
    for name, value, op, limit in checks:
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out.append({"target": name, "value": value, "op": op, "limit": limit, "met": met})
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_md(results: Mapping[str, Any]) -> str:
    """results.md: speed and quality side by side, then the machine and how to rerun."""
    m, b, s = results["machine"], results["bundle"], results["settings"]
    sizes = [str(x) for x in s["batch_sizes"]]
    lines = [
        f"# Benchmark: {b['bundle_version']} on {m['device_name']}", "",
        f"`{results['command']}`, {results['created_at']}. {s['tickets']} single-ticket calls "
        f"of `Router.route` (tokenization included) cycling the {results['tickets']['rows']} "
        f"test rows of `{b['dataset_version']}` after {s['warmup']} warm-up calls; throughput "
        f"over {s['throughput_tickets']} tickets per batch size through `Router.route_batch`; "
        f"cold start is the median of {s['cold_runs']} fresh processes (interpreter start to "
        f"first decision, bytecode cached as an installed wheel has it), for the whole bundle "
        f"and for a slim pack of the one artifact (ONNX only). Each artifact runs in its own "
        f"process. Speed-ups are against "
        f"torch-fp32 eager in this run.", "",
        "## Speed", "",
        "| Artifact | Mode | p50 ms | p95 ms | p99 ms | p50 speed-up | "
        + " | ".join(f"tickets/s @{x}" for x in sizes)
        + " | Cold start s | Pack cold start s | Peak RSS MB | Size MB |",
        "|---|---|---|---|---|---|" + "---|" * len(sizes) + "---|---|---|---|",
    ]
    for name, block in results["artifacts"].items():
        warm, cold = block.get("warm") or {}, block.get("cold_start") or {}
        if not warm.get("measured"):
            why = block.get("skip_reason") or warm.get("skip_reason") or "not measured"
            lines.append(f"| {name} | skipped: {why} | - | - | - | - | "
                         + " | ".join("-" for _ in sizes)
                         + f" | - | - | - | {_fmt(block['quality'].get('size_mb'), 1)} |")
            continue
        lat, ratio = warm["latency"], block.get("vs_torch_fp32") or {}
        mode = "held: measured only" if warm["mode"] == "measurement_only" else "serving"
        lines.append(
            f"| {name} | {mode} | {_fmt(lat['p50_ms'])} | {_fmt(lat['p95_ms'])} | "
            f"{_fmt(lat['p99_ms'])} | {_fmt(ratio.get('p50_speedup'))}x | "
            + " | ".join(_fmt(warm["throughput"][x]["tickets_per_s"], 1) for x in sizes)
            + f" | {_fmt(cold.get('median_s'), 3)} | "
            f"{_fmt((block.get('pack_cold_start') or {}).get('median_s'), 3)} | "
            f"{_fmt((cold.get('peak_rss_mb') or {}).get('max'), 0)} | "
            f"{_fmt(block['quality'].get('size_mb'), 1)} |")
    for name, block in results["baselines"].items():
        if not block.get("measured"):
            lines.append(f"| {name} (baseline) | skipped: {block.get('skip_reason')} | - | - | "
                         "- | - | " + " | ".join("-" for _ in sizes) + " | - | - | - | - |")
            continue
        lat, ratio = block["latency"], block.get("vs_torch_fp32") or {}
        lines.append(
            f"| {name} (baseline) | scores text, no router | {_fmt(lat['p50_ms'], 3)} | "
            f"{_fmt(lat['p95_ms'], 3)} | {_fmt(lat['p99_ms'], 3)} | "
            f"{_fmt(ratio.get('p50_speedup'))}x | "
            + " | ".join(_fmt(block["throughput"][x]["tickets_per_s"], 1) for x in sizes)
            + " | - | - | - | - |")
    versus = [(n, (b.get("warm") or {}).get("vs_optimum_default") or {})
              for n, b in results["artifacts"].items()]
    versus = [(n, v) for n, v in versus if v.get("measured")]
    if versus:
        recipe = versus[0][1]["recipe"]
        lines += ["", "## Against bare onnxruntime on Optimum's default int8 of the same graph "
                  "(same process, interleaved)",
                  "", f"A bare onnxruntime session + tokenizers (truncated, whole ticket) on "
                  f"Optimum's default `{recipe['config']}` of this bundle's own onnx-fp32 graph "
                  f"(CPU family `{recipe['cpu_family']}`), against `Router.route` (segment "
                  f"scoring on), blocks of 50 tickets in rotating order. Ratio < 1: the router "
                  f"is faster.", "",
                  "| Artifact | Router p50 ms | Optimum-default bare p50 ms | p50 ratio | "
                  "p95 ratio | Pack cold start / bare cold start |", "|---|---|---|---|---|---|"]
        bare_cold = (results.get("optimum_default") or {}).get("cold_start") or {}
        for n, v in versus:
            pack = (results["artifacts"][n].get("pack_cold_start") or {}).get("median_s")
            lines.append(f"| {n} | {_fmt(v['router']['p50_ms'], 3)} | "
                         f"{_fmt(v['optimum_default_bare']['p50_ms'], 3)} | "
                         f"{_fmt(v['p50_ratio'], 3)}x | {_fmt(v['p95_ratio'], 3)}x | "
                         f"{_fmt(_ratio(pack, bare_cold.get('median_s')), 3)}x |")
        if bare_cold.get("median_s") is not None:
            lines += ["", f"Bare onnxruntime + tokenizers on that Optimum-default file, a new "
                          f"process to its first logits: median {bare_cold['median_s']:.3f} s "
                          f"over {bare_cold['runs']} processes (imports "
                          f"{bare_cold['median_split_s']['import_s']:.3f} s), peak RSS "
                          f"{bare_cold['peak_rss_mb']:.0f} MB."]
    spans = [(f"{n}{label}", (b.get(key) or {}).get("median_spans_s"))
             for n, b in results["artifacts"].items()
             for key, label in (("cold_start", ""), ("pack_cold_start", " (pack)"))]
    spans = [(n, sp) for n, sp in spans if sp]
    if spans:
        steps = list(dict.fromkeys(k for _, sp in spans for k in sp))
        lines += ["", "## Cold start, per step (median seconds over the fresh processes)", "",
                  "| Artifact | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps)]
        lines += [f"| {n} | " + " | ".join(_fmt(sp.get(k), 4) for k in steps) + " |"
                  for n, sp in spans]
    costs = [(n, (b.get("warm") or {}).get("segment_cost") or {})
             for n, b in results["artifacts"].items()]
    costs = [(n, c) for n, c in costs if c.get("measured")]
    if costs:
        lines += ["", "## The cost of segment scoring (same process, alternating)", "",
                  "`score_ticket` on prepared test tickets with the bundle's segmentation, and "
                  "with whole-ticket scoring (no segments, as bundles scored before), same "
                  "backend.", "",
                  "| Artifact | Segmentation | p50 ms segments | p50 ms whole ticket | Ratio | "
                  "Model rows per ticket (segments / whole) |", "|---|---|---|---|---|---|"]
        for name, c in costs:
            lines.append(f"| {name} | `{c['segmentation']}` | {_fmt(c['segments']['p50_ms'])} "
                         f"| {_fmt(c['whole_ticket']['p50_ms'])} | {_fmt(c['p50_ratio'])}x | "
                         f"{c['segments']['rows_per_ticket']} / "
                         f"{c['whole_ticket']['rows_per_ticket']} |")
    lines += ["", "## Quality (gate receipt and drift against torch-fp32)", "",
              "| Artifact | Recipe | Status | Reason | Gated with | max abs score delta | "
              "Route flips |",
              "|---|---|---|---|---|---|---|"]
    for name, block in results["artifacts"].items():
        q = block["quality"]
        if not q.get("in_bundle"):
            lines.append(f"| {name} | - | not in bundle | - | - | - | - |")
            continue
        delta = q.get("max_abs_score_delta")
        families = q.get("cpu_families")
        gated = _fmt(q['gated_with']) + (f" (CPU families: {', '.join(families)})"
                                         if families else "")
        lines.append(f"| {name} | {_fmt(q.get('recipe'))} | {q['status']} | `{q['reason']}` | "
                     f"{gated} | "
                     f"{'-' if delta is None else f'{delta:.2g}'} | "
                     f"{_fmt(q.get('route_flips'))} |")
    test = results["test_set"]
    if test.get("available"):
        lines += ["", f"Test split ({test['source']}, scored with {test['scored_with']}):", "",
                  "| Model | Required missed | FP rate | ROC-AUC |", "|---|---|---|---|"]
        for label, fig in [("encoder", test["encoder"]), *test["baselines"].items()]:
            if fig:
                lines.append(f"| {label} | {_fmt(fig['required_missed'])}/"
                             f"{_fmt(fig['required_positives'])} | "
                             f"{_fmt(fig['false_positive_rate'], 3)} | "
                             f"{_fmt(fig['roc_auc'], 3)} |")
    lines += ["", "## Targets (issues 6 and 15)", "", "| Target | Value | Limit | Met |",
              "|---|---|---|---|"]
    for t in results["targets"]:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {_fmt(t['value'], 3)} | {t['op']} {t['limit']} | "
                     f"{met} |")
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    lines += ["", "## Machine", "",
              f"- {m['cpu_model']} (int8 family `{m.get('cpu_family')}`), "
              f"{m['logical_cores']} logical cores "
              f"({_fmt(m['physical_cores'])} physical), device `{m['device']}`"
              + (f" ({m['gpu']})" if m.get("gpu") else "")
              + f", threads per router {_fmt(s['threads'])}",
              f"- {m['os']}, Python {m['python']}",
              f"- {libs}",
              f"- load average before {m['load_average_before']}, after "
              f"{results.get('load_average_after')}", ""]
    held = [n for n, blk in results["artifacts"].items()
            if (blk.get("warm") or {}).get("mode") == "measurement_only"]
    if held:
        lines += [f"Held artifacts ({', '.join(held)}) are refused by the router; they were "
                  "loaded with the measurement-only option and every one of their decisions was "
                  "`human_review_now` / `artifact_held`. Do not ship them.", ""]
    return "\n".join(lines)
