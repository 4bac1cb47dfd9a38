"""`run_bench` and `run_soak`: orchestrate the measurements and write the report files."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intakegate.benchmarks import machine
from intakegate.benchmarks.latency import WarmSettings
from intakegate.bundle.manifest import Manifest

log = logging.getLogger("intakegate.benchmarks")
SCHEMA = "intakegate-bench/1"
DEFAULT_ARTIFACTS = ("torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-vnni", "coreml-fp16",
                     "coreml-int8")
COREML = ("coreml-fp16", "coreml-int8")
RESULTS_ROOT = Path("runs") / "bench"  # ignored by git; --out chooses another folder


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run. Defaults are the committed-results settings; `quick()` is for tests."""

    bundle: str
    artifacts: tuple[str, ...] = DEFAULT_ARTIFACTS
    device: str = "auto"
    threads: int | None = None
    out: Path | None = None
    bundles_root: Path = Path("bundles")
    warm: WarmSettings = field(default_factory=WarmSettings)
    cold_runs: int = 5
    baselines: bool = True
    # The side-by-side column: a bare session on Optimum's default int8 of this bundle's own
    # onnx-fp32 graph (the strict comparison: never another model's graph).
    optimum_default: bool = True
    charts: bool = True
    command: str = ""  # how this run was started, recorded so it can be rerun

    @staticmethod
    def quick(bundle: str, **changes: Any) -> BenchConfig:
        """Seconds, not minutes: enough calls to exercise every path, too few to quote."""
        settings = WarmSettings(tickets=40, warmup=5, throughput_tickets=64)
        return BenchConfig(bundle, warm=settings, cold_runs=1, **changes)


@dataclass(frozen=True)
class SoakConfig:
    """A soak of `tickets` single routes per artifact."""

    bundle: str
    tickets: int
    artifacts: tuple[str, ...] = ()
    device: str = "auto"
    threads: int | None = None
    out: Path | None = None
    bundles_root: Path = Path("bundles")
    windows: int = 20
    warmup_fraction: float = 0.05


def resolve_device(device: str) -> str:
    """`auto` becomes one concrete device for every artifact, so they are measured alike."""
    if device != "auto":
        return device
    import onnxruntime as ort

    from intakegate.runtime.onnx_backend import pick_provider

    return pick_provider("auto", list(ort.get_available_providers()))[0]


def skip_reason(artifact: str, present: Collection[str]) -> str | None:
    """Why an artifact cannot be timed through the router here (None: it can be tried)."""
    absent = artifact not in present
    if artifact in COREML:
        if sys.platform != "darwin":
            return (f"Core ML runs only on macOS (this platform is {sys.platform})"
                    + ("; not in this bundle either" if absent else ""))
        return ("the router does not run Core ML (the macOS client does); there is no "
                "Router.route path to time")
    if absent:
        return (f"not in bundle (has {', '.join(sorted(present))}); run "
                f"`intakegate export`")
    return None


def _bundle_block(verified: Any) -> dict[str, Any]:
    m = verified.manifest
    return {"path": str(verified.root), "bundle_version": m.bundle_version,
            "dataset": m.dataset, "dataset_version": m.dataset_version,
            "split_manifest_version": m.split_manifest_version,
            "manifest_sha256": verified.manifest_sha256, "threshold": m.threshold,
            "base_model": m.base_model}


def _out_dir(out: Path | None, device: str, bundle_version: str) -> Path:
    return out if out is not None else RESULTS_ROOT / machine.device_name(device) / bundle_version


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def run_bench(config: BenchConfig) -> tuple[dict[str, Any], Path]:
    """Measure every requested artifact and both baselines; write results.json/.md and charts."""
    from intakegate.benchmarks import report
    from intakegate.benchmarks.baselines_speed import measure_baselines
    from intakegate.benchmarks.coldstart import bare_cold_start, cold_start, pack_cold_start
    from intakegate.benchmarks.inputs import load_texts
    from intakegate.benchmarks.quality import artifact_quality, bundle_test_figures
    from intakegate.benchmarks.worker import run_in_worker
    from intakegate.bundle import BundleError, resolve_bundle, verify_bundle
    from intakegate.runtime.onnx_backend import default_threads

    started = time.perf_counter()
    bundle_dir = resolve_bundle(config.bundle, config.bundles_root).path.resolve()
    verified = verify_bundle(bundle_dir)
    texts = load_texts(verified)
    device = resolve_device(config.device)
    threads = config.threads or default_threads()
    out_dir = _out_dir(config.out, device, verified.bundle_version)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("bench %s on %s (%d threads), %d test rows -> %s", verified.bundle_version, device,
             threads, len(texts.test), out_dir)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": config.command or "run_bench()",
        "bundle": _bundle_block(verified),
        "machine": machine.describe(device, threads),
        "settings": {**asdict(config.warm), "batch_sizes": list(config.warm.batch_sizes),
                     "cold_runs": config.cold_runs, "device": device,
                     "device_requested": config.device, "threads": threads,
                     "artifacts": list(config.artifacts)},
        "tickets": {"source": f"{texts.dataset_version} test split "
                              f"({texts.split_manifest_version})", "rows": len(texts.test)},
        "artifacts": {}, "baselines": {},
        "test_set": bundle_test_figures(verified),
    }
    optimum = (optimum_default_model(verified.root, verified.manifest, results["machine"])
               if config.optimum_default and any(a.startswith("onnx-") for a in config.artifacts)
               else None)
    results["optimum_default"] = optimum
    if optimum and optimum.get("path") and config.cold_runs > 0:
        log.info("bare onnxruntime + tokenizers on the Optimum default: cold start")
        try:
            optimum["cold_start"] = bare_cold_start(
                Path(optimum["path"]), bundle_dir / verified.manifest.tokenizer,
                verified.manifest.input_policy.max_length, threads, texts.test[0],
                config.cold_runs)
        except RuntimeError as exc:
            optimum["cold_start"] = {"error": str(exc)}
    for artifact in config.artifacts:
        block: dict[str, Any] = {"quality": artifact_quality(verified, artifact), "warm": None,
                                 "cold_start": None, "pack_cold_start": None,
                                 "skip_reason": None}
        results["artifacts"][artifact] = block
        why = skip_reason(artifact, verified.manifest.artifacts)
        if why is not None:
            log.info("%s: skipped (%s)", artifact, why)
            block["skip_reason"] = why
            block["warm"] = {"measured": False, "mode": "skipped", "skip_reason": why}
            continue
        log.info("%s: warm latency and throughput (fresh process)", artifact)
        job = {"kind": "warm", "bundle": str(bundle_dir), "artifact": artifact, "device": device,
               "threads": threads, "texts": list(texts.test), "settings": asdict(config.warm),
               "optimum": optimum if artifact.startswith("onnx-") else None}
        try:
            block["warm"] = run_in_worker(job)
        except RuntimeError as exc:
            block["warm"] = {"measured": False, "mode": "error", "skip_reason": str(exc)}
        warm = block["warm"]
        if not warm.get("measured"):
            block["skip_reason"] = warm.get("skip_reason")
            continue
        log.info("%s: p50 %.3f ms, p95 %.3f ms (%s)", artifact, warm["latency"]["p50_ms"],
                 warm["latency"]["p95_ms"], warm["mode"])
        if config.cold_runs > 0:
            held = warm["mode"] == "measurement_only"
            try:
                block["cold_start"] = cold_start(bundle_dir, artifact, device, threads, held,
                                                 texts.test[0], config.cold_runs)
            except RuntimeError as exc:
                block["cold_start"] = {"error": str(exc)}
            if artifact.startswith("onnx-"):  # what a desktop client ships: a slim pack
                try:
                    block["pack_cold_start"] = pack_cold_start(
                        bundle_dir, artifact, device, threads, held, texts.test[0],
                        config.cold_runs)
                except (RuntimeError, BundleError) as exc:
                    block["pack_cold_start"] = {"error": str(exc)}
    if config.baselines:
        log.info("baselines: keyword rule and TF-IDF + LR on the same tickets")
        results["baselines"] = measure_baselines(texts, config.warm)
    report.add_ratios(results)
    results["targets"] = report.target_checks(results)
    results["load_average_after"] = machine.load_average()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["files"] = {"json": "results.json", "markdown": "results.md", "charts": []}
    if config.charts:
        results["files"]["charts"] = _charts(results, out_dir)
    _write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(report.render_md(results), encoding="utf-8")
    log.info("wrote %s (%.0fs)", out_dir, results["elapsed_s"])
    return results, out_dir


def optimum_default_model(bundle_dir: Path, manifest: Manifest, machine_block: dict[str, Any]
                          ) -> dict[str, Any]:
    """Build (or find cached) Optimum's default int8 of the bundle's onnx-fp32, in a worker."""
    from intakegate.benchmarks.worker import run_in_worker

    art = manifest.artifacts.get("onnx-fp32")
    if art is None:
        return {"skip_reason": f"{manifest.bundle_version} has no onnx-fp32 graph to quantize"}
    log.info("Optimum default int8 of %s onnx-fp32 for %s (fresh process)",
             manifest.bundle_version, machine_block["cpu_family"])
    try:
        built = run_in_worker({"kind": "optimum_int8", "artifact": "optimum-default-int8",
                               "fp32": str(bundle_dir / art.path),
                               "cpu_family": machine_block["cpu_family"]})
    except RuntimeError as exc:
        return {"skip_reason": str(exc)}
    return {**built, "fp32_bundle_version": manifest.bundle_version}


def _charts(results: dict[str, Any], out_dir: Path) -> list[str]:
    from intakegate.benchmarks import plots

    try:
        written = [plots.latency_chart(results, out_dir / "latency.png"),
                   plots.throughput_chart(results, out_dir / "throughput.png")]
    except ImportError as exc:
        log.warning("charts skipped: %s (install the `train` extra for matplotlib)", exc)
        results["files"]["charts_skipped"] = str(exc)
        return []
    return [p.name for p in written]


def run_soak(config: SoakConfig) -> tuple[list[dict[str, Any]], Path]:
    """Soak each artifact (default: onnx-int8, else onnx-fp32) in a fresh process."""
    from intakegate.benchmarks import plots
    from intakegate.benchmarks.inputs import load_texts
    from intakegate.benchmarks.report import TARGETS
    from intakegate.benchmarks.worker import run_in_worker
    from intakegate.bundle import resolve_bundle, verify_bundle
    from intakegate.runtime.onnx_backend import default_threads

    bundle_dir = resolve_bundle(config.bundle, config.bundles_root).path.resolve()
    verified = verify_bundle(bundle_dir)
    texts = load_texts(verified)
    device = resolve_device(config.device)
    threads = config.threads or default_threads()
    present = verified.manifest.artifacts
    artifacts = config.artifacts or tuple(
        a for a in ("onnx-int8", "onnx-fp32", "torch-fp32") if a in present)[:1]
    out_dir = _out_dir(config.out, device, verified.bundle_version)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for artifact in artifacts:
        log.info("soak %s: %d tickets (fresh process)", artifact, config.tickets)
        job = {"kind": "soak", "bundle": str(bundle_dir), "artifact": artifact, "device": device,
               "threads": threads, "texts": list(texts.test), "tickets": config.tickets,
               "windows": config.windows, "warmup_fraction": config.warmup_fraction}
        result = run_in_worker(job)
        result["machine"] = machine.describe(device, threads)
        result["bundle"] = _bundle_block(verified)
        if result.get("measured"):
            growth = result["rss_growth_after_warmup_pct"]
            result["target"] = {"rss_growth_pct_max": TARGETS["soak_rss_growth_pct_max"],
                                "met": growth < TARGETS["soak_rss_growth_pct_max"]}
            try:
                result["chart"] = plots.soak_chart(result, out_dir / f"soak-{artifact}.png").name
            except ImportError as exc:
                log.warning("soak chart skipped: %s", exc)
        _write_json(out_dir / f"soak-{artifact}.json", result)
        results.append(result)
    return results, out_dir
