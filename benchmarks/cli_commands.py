"""`intakegate bench` for the CLI. Light imports only: the work happens in `runner`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

ALL = "torch-fp32,onnx-fp32,onnx-int8,onnx-int8-vnni,coreml-fp16,coreml-int8"


def register(app: typer.Typer) -> None:
    """Add the benchmark command to the main app."""
    app.command("bench")(bench_command)


def bench_command(
    bundle: Annotated[str, typer.Argument(help="A bundle directory, or a dataset name (its "
                                               "active bundle).")],
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps (auto: one device for "
                                             "every artifact).")] = "auto",
    artifacts: Annotated[str, typer.Option(help="Comma-separated artifacts to measure.")] = ALL,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder (default runs/bench/<device-name>/<bundle_version>/).")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(
        help="Inference threads per router (default: the router's, min(4, CPU count)).")] = None,
    tickets: Annotated[Optional[int], typer.Option(
        help="Single-ticket calls to time per artifact (default 1000; quick 40).")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Untimed calls first.")] = None,
    throughput_tickets: Annotated[Optional[int], typer.Option(
        help="Tickets per batch size for throughput (default 512).")] = None,
    cold_runs: Annotated[Optional[int], typer.Option(
        help="Fresh processes for cold start (default 5; 0 skips).")] = None,
    quick: Annotated[bool, typer.Option(help="A few seconds: checks the plumbing, not numbers "
                                             "to quote.")] = False,
    soak: Annotated[Optional[int], typer.Option(
        help="Soak mode: route N tickets through one router per artifact (default artifact "
             "onnx-int8) and report latency over time and RSS growth.")] = None,
    no_optimum_default: Annotated[bool, typer.Option(
        "--no-optimum-default", help="Skip the side-by-side column (a bare onnxruntime session "
                                     "on Optimum's default int8 of the onnx-fp32 graph).")
    ] = False,
    no_baselines: Annotated[bool, typer.Option("--no-baselines",
                                               help="Skip the keyword and TF-IDF baselines.")
                            ] = False,
    bundles_dir: Annotated[Path, typer.Option("--bundles-dir", envvar="INTAKEGATE_BUNDLES",
                                              help="Root folder of the bundles.")] = Path(
        "bundles"),
) -> None:
    """Latency, throughput, cold start and memory per artifact, beside each artifact's receipt.

    Single-ticket p50/p95/p99 through Router.route over the bundle's test rows (after warm-up),
    tickets/s at batch 1, 8 and 32, cold start (new process to first decision, median) with its
    peak RSS, and the two baselines on the same tickets; ratios against torch-fp32 eager in the
    same run. Held artifacts are timed in a measurement-only mode (every decision stays
    human_review_now / artifact_held); Core ML is reported as skipped off macOS. Writes
    results.json, results.md, latency.png and throughput.png.

    Each artifact runs in a fresh process; do not run it beside other heavy work, the numbers
    are only as quiet as the machine.
    """
    from dataclasses import replace

    from intakegate.benchmarks.runner import BenchConfig, SoakConfig, run_bench, run_soak
    from intakegate.cli import _setup_logging

    _setup_logging()
    names = tuple(a.strip() for a in artifacts.split(",") if a.strip())
    known = set(ALL.split(","))
    unknown = [a for a in names if a not in known]
    if unknown or not names:
        raise typer.BadParameter(f"unknown artifact(s) {unknown}; use {ALL}",
                                 param_hint="--artifacts")
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise typer.BadParameter("use auto, cpu, cuda or mps", param_hint="--device")
    command = " ".join(shlex.quote(a) for a in ["intakegate", *sys.argv[1:]])
    if soak is not None:
        if soak < 1:
            raise typer.BadParameter("at least 1 ticket", param_hint="--soak")
        explicit = names if artifacts != ALL else ()
        results, out_dir = run_soak(SoakConfig(bundle, soak, explicit, device, threads, out,
                                               bundles_dir))
        for r in results:
            if not r.get("measured"):
                typer.echo(f"{r['artifact']}: not measured ({r.get('skip_reason')})")
                continue
            typer.echo(f"{r['artifact']}: {r['tickets']} tickets, p50 {r['latency']['p50_ms']:.3f}"
                       f" ms, p99 {r['latency']['p99_ms']:.3f} ms, RSS growth after warm-up "
                       f"{r['rss_growth_after_warmup_pct']:.2f}%, failures "
                       f"{r['failures']['count']} ({r['mode']})")
        typer.echo(f"wrote {out_dir}")
        return
    config = (BenchConfig.quick(bundle) if quick else BenchConfig(bundle))
    warm = config.warm
    warm = replace(warm, **{k: v for k, v in (("tickets", tickets), ("warmup", warmup),
                                              ("throughput_tickets", throughput_tickets))
                            if v is not None})
    config = replace(config, artifacts=names, device=device, threads=threads, out=out,
                     bundles_root=bundles_dir, warm=warm, baselines=not no_baselines,
                     optimum_default=not no_optimum_default,
                     cold_runs=config.cold_runs if cold_runs is None else cold_runs,
                     command=command)
    results, out_dir = run_bench(config)
    for name, block in results["artifacts"].items():
        warm_block = block.get("warm") or {}
        if not warm_block.get("measured"):
            typer.echo(f"{name}: skipped ({block.get('skip_reason')})")
            continue
        lat = warm_block["latency"]
        cold = block.get("cold_start") or {}
        ratio = (block.get("vs_torch_fp32") or {}).get("p50_speedup")
        typer.echo(f"{name}: p50 {lat['p50_ms']:.3f} ms p95 {lat['p95_ms']:.3f} ms p99 "
                   f"{lat['p99_ms']:.3f} ms, x{ratio if ratio is not None else '-'} vs "
                   f"torch-fp32, cold start {cold.get('median_s', '-')} s (slim pack "
                   f"{(block.get('pack_cold_start') or {}).get('median_s', '-')} s), peak RSS "
                   f"{(cold.get('peak_rss_mb') or {}).get('max', '-')} MB"
                   + (" [held: measured only]" if warm_block["mode"] == "measurement_only"
                      else ""))
        versus = warm_block.get("vs_optimum_default") or {}
        if versus.get("measured"):
            typer.echo(f"{name}: Router.route p50 / bare Optimum-default int8 p50 = "
                       f"{versus['p50_ratio']}x ({versus['recipe']['config']}, "
                       f"{versus['recipe']['cpu_family']})")
        cost = warm_block.get("segment_cost") or {}
        if cost.get("measured"):
            typer.echo(f"{name}: segment scoring ({cost['segmentation']}) p50 "
                       f"{cost['segments']['p50_ms']:.3f} ms vs whole ticket "
                       f"{cost['whole_ticket']['p50_ms']:.3f} ms ({cost['p50_ratio']}x)")
    for name, block in results["baselines"].items():
        if block.get("measured"):
            typer.echo(f"{name} (baseline): p50 {block['latency']['p50_ms']:.3f} ms")
    typer.echo(f"wrote {out_dir}/results.json, results.md"
               + "".join(f", {c}" for c in results["files"]["charts"]))
