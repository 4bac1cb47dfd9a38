"""`intakegate bench` on the tiny bundles: the report's shape, not its speed.

Timing targets are checked by running the benchmark on a quiet machine, never here: these tests
check that every field is there, that ratios follow from the numbers beside them, that a held
artifact is measured but every one of its decisions stays with a person, that Core ML is
reported as skipped off macOS, and that the Markdown, charts and soak files are written.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from intakegate.benchmarks.inputs import load_texts
from intakegate.benchmarks.runner import BenchConfig, SoakConfig, run_bench, run_soak
from intakegate.bundle import Artifact, verify_bundle
from intakegate.errors import InputError
from intakegate.runtime import Router
from tests.runtime_helpers import rewrite

PNG = b"\x89PNG\r\n\x1a\n"
LATENCY_FIELDS = {"n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"}
off_macos = pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")


@pytest.fixture(scope="module")
def held_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny bundle with ONNX fp32/int8 exported, then onnx-int8 marked held."""
    from intakegate.export.pipeline import export_bundle

    dst = tmp_path_factory.mktemp("bench") / "refund-intake" / "tiny-bench"
    dst.parent.mkdir(parents=True)
    shutil.copytree(tiny_bundle, dst)
    export_bundle(dst, [Artifact.ONNX_FP32, Artifact.ONNX_INT8])
    rewrite(dst, lambda m: m["artifacts"]["onnx-int8"].update(status="hold",
                                                              reason="fp_budget:test_hold"))
    return dst


@pytest.fixture(scope="module")
def bench(held_bundle: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[dict, Path]:
    import os

    from intakegate.benchmarks.optimum_default import CACHE_ENV

    out = tmp_path_factory.mktemp("bench-out")
    config = BenchConfig.quick(str(held_bundle), out=out, device="cpu", threads=1)
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("optimum-cache"))
    try:
        results, out_dir = run_bench(config)
    finally:
        if saved is None:
            os.environ.pop(CACHE_ENV)
        else:
            os.environ[CACHE_ENV] = saved
    assert out_dir == out
    return results, out_dir


def test_optimum_default_column_is_timed_beside_the_router(bench: tuple[dict, Path],
                                                           held_bundle: Path) -> None:
    """Each onnx artifact has the side-by-side ratio (router p50 / bare session on Optimum's
    default int8 of the bundle's onnx-fp32), the recipe names the detected CPU family, and the
    built graph lives in the cache, never in the gated bundle (which still verifies)."""
    from intakegate.benchmarks.machine import cpu_family
    from intakegate.benchmarks.optimum_default import RECIPES

    results, _ = bench
    family = results["machine"]["cpu_family"]
    assert family == cpu_family()
    built = results["optimum_default"]
    assert built["recipe"] == {"cpu_family": family, "config": f"AutoQuantizationConfig."
                               f"{RECIPES[family]}(is_static=False, per_channel=True)"}
    assert held_bundle.resolve() not in Path(built["path"]).resolve().parents
    verify_bundle(held_bundle)
    for name in ("onnx-fp32", "onnx-int8"):
        versus = results["artifacts"][name]["warm"]["vs_optimum_default"]
        assert versus["measured"], versus
        assert versus["router"]["n"] == versus["optimum_default_bare"]["n"] == \
            results["settings"]["tickets"]
        assert versus["p50_ratio"] == round(versus["router"]["p50_ms"]
                                            / versus["optimum_default_bare"]["p50_ms"], 3)
    assert not results["artifacts"]["torch-fp32"]["warm"]["vs_optimum_default"]["measured"]
    # The by-hand cold start beside the router's: same file, a new process to first logits.
    bare = built["cold_start"]
    assert bare["runs"] == 1 and 0 < bare["median_s"] and bare["peak_rss_mb"] > 0
    assert set(bare["median_split_s"]) == {"import_s", "load_s", "first_route_s"}


def test_results_json_has_every_field(bench: tuple[dict, Path]) -> None:
    results, out_dir = bench
    assert json.loads((out_dir / "results.json").read_text()) == results
    assert results["schema"] == "intakegate-bench/1"
    assert {"bundle", "machine", "settings", "tickets", "artifacts", "baselines", "test_set",
            "targets", "elapsed_s", "files"} <= set(results)
    m = results["machine"]
    assert {"cpu_model", "logical_cores", "threads_requested", "os", "python", "device_name"
            } <= set(m)
    assert {"onnxruntime", "numpy", "tokenizers", "torch"} <= set(m["libraries"])
    assert m["device_name"].startswith("cpu-") and m["device_name"].endswith("cores")
    assert results["bundle"]["dataset_version"] == verify_bundle(
        results["bundle"]["path"]).manifest.to_json()["dataset_version"]
    assert set(results["artifacts"]) == {a.value for a in Artifact}
    for name in ("torch-fp32", "onnx-fp32", "onnx-int8"):
        block = results["artifacts"][name]
        warm = block["warm"]
        assert warm["measured"], (name, block)
        assert set(warm["latency"]) == LATENCY_FIELDS
        assert warm["latency"]["n"] == results["settings"]["tickets"]
        assert 0 < warm["latency"]["p50_ms"] <= warm["latency"]["p95_ms"] \
            <= warm["latency"]["p99_ms"]
        assert set(warm["throughput"]) == {"1", "8", "32"}
        assert all(t["tickets_per_s"] > 0 for t in warm["throughput"].values())
        assert warm["threads"] == 1 and warm["device"] == "cpu"
        assert warm["decisions"]["failures"] == 0
        cold = block["cold_start"]
        assert cold["runs"] == 1 and cold["median_s"] > 0 and cold["ready"]
        assert cold["peak_rss_mb"]["max"] > 0
        assert set(cold["median_split_s"]) == {"import_s", "load_s", "first_route_s"}
        spans = cold["median_spans_s"]  # one span per load step, in load order
        assert list(spans)[0] == "import" and list(spans)[-1] == "first_decision"
        assert {"verify_hashes", "tokenizer", "session", "selftest"} <= set(spans)
        assert all(v >= 0 for k, v in spans.items() if k != "load_other")
        q = block["quality"]
        assert q["in_bundle"] and q["size_bytes"] > 0
    assert not results["artifacts"]["onnx-fp32"]["cold_start"]["torch_imported"]
    assert results["artifacts"]["onnx-fp32"]["quality"]["max_abs_score_delta"] is not None
    assert results["artifacts"]["onnx-fp32"]["quality"]["route_flips"] is not None
    # which int8 recipe the export shipped is named beside its gate (fp32 has none)
    assert results["artifacts"]["onnx-int8"]["quality"]["recipe"] in ("portable",
                                                                      "portable-dynamic")
    assert results["artifacts"]["onnx-fp32"]["quality"]["recipe"] is None
    assert results["test_set"]["available"]
    assert {"required_missed", "false_positive_rate", "roc_auc"} <= set(
        results["test_set"]["encoder"])
    for name in ("keyword_rule", "tfidf_logreg"):
        assert results["baselines"][name]["measured"]
        assert set(results["baselines"][name]["latency"]) == LATENCY_FIELDS


def test_ratios_follow_from_the_numbers(bench: tuple[dict, Path]) -> None:
    results, _ = bench
    ref = results["artifacts"]["torch-fp32"]["warm"]
    blocks = [(b["warm"], b["vs_torch_fp32"]) for b in results["artifacts"].values()
              if b["warm"]["measured"]]
    blocks += [(b, b["vs_torch_fp32"]) for b in results["baselines"].values()]
    for block, ratio in blocks:
        assert ratio["available"] and ratio["reference"] == "torch-fp32"
        assert ratio["p50_speedup"] == round(ref["latency"]["p50_ms"] /
                                             block["latency"]["p50_ms"], 3)
        assert ratio["p95_speedup"] == round(ref["latency"]["p95_ms"] /
                                             block["latency"]["p95_ms"], 3)
        for size, t in block["throughput"].items():
            assert ratio["throughput_ratio"][size] == round(
                t["tickets_per_s"] / ref["throughput"][size]["tickets_per_s"], 3)
    assert results["artifacts"]["torch-fp32"]["vs_torch_fp32"]["p50_speedup"] == 1.0
    targets = {t["target"]: t for t in results["targets"]}
    speedup = targets["onnx-int8 p50 speed-up over torch-fp32 eager"]
    assert speedup["value"] == results["artifacts"]["onnx-int8"]["vs_torch_fp32"]["p50_speedup"]
    assert speedup["met"] == (speedup["value"] >= 5.0)
    int8 = results["artifacts"]["onnx-int8"]
    for level, ratio_max, cold_max in (("floor", 0.8, 0.35), ("target", 0.5, 0.2)):
        ratio = targets[f"onnx-int8 Router.route p50 / bare Optimum-default p50 ({level})"]
        assert ratio["value"] == int8["warm"]["vs_optimum_default"]["p50_ratio"]
        assert ratio["limit"] == ratio_max and ratio["met"] == (ratio["value"] <= ratio_max)
        cold = targets[f"onnx-int8 pack cold start s, median ({level})"]
        assert cold["value"] == int8["pack_cold_start"]["median_s"]
        assert cold["limit"] == cold_max and cold["met"] == (cold["value"] <= cold_max)


def test_held_artifact_is_measured_and_every_decision_labelled(bench: tuple[dict, Path]
                                                               ) -> None:
    results, _ = bench
    held = results["artifacts"]["onnx-int8"]
    assert held["quality"]["status"] == "hold"
    warm = held["warm"]
    assert warm["mode"] == "measurement_only"
    assert "artifact_held" in warm["held_reason"]
    decisions = warm["decisions"]
    assert decisions["total"] > 0
    assert decisions["reasons"] == {"artifact_held": decisions["total"]}
    assert decisions["measurement_only_labelled"] == decisions["total"]
    assert held["cold_start"]["first_decision"] == {"route": "human_review_now",
                                                    "reason": "artifact_held"}
    # Its slim pack (made measurement-only, so the pack is held too) is timed the same way.
    pack = held["pack_cold_start"]
    assert pack["runs"] == 1 and pack["median_s"] > 0 and pack["ready"]
    assert pack["first_decision"] == {"route": "human_review_now", "reason": "artifact_held"}
    assert 0 < pack["size_mb"] < held["quality"]["size_bytes"] / 2 ** 20 + 1
    served = results["artifacts"]["onnx-fp32"]["pack_cold_start"]
    assert served["ready"] and served["first_decision"]["reason"] != "artifact_held"
    assert results["artifacts"]["torch-fp32"]["pack_cold_start"] is None  # ONNX packs only
    for name in ("torch-fp32", "onnx-fp32"):
        assert results["artifacts"][name]["warm"]["mode"] == "serving"
        assert results["artifacts"][name]["warm"]["decisions"]["measurement_only_labelled"] == 0


@off_macos
def test_coreml_is_skipped_with_a_reason(bench: tuple[dict, Path]) -> None:
    results, out_dir = bench
    for name in ("coreml-fp16", "coreml-int8"):
        block = results["artifacts"][name]
        assert block["warm"]["measured"] is False
        assert "macOS" in block["skip_reason"]
        assert block["cold_start"] is None
    assert "coreml-int8 | skipped: Core ML runs only on macOS" in (
        out_dir / "results.md").read_text()


def test_markdown_and_charts_are_written(bench: tuple[dict, Path]) -> None:
    results, out_dir = bench
    md = (out_dir / "results.md").read_text()
    assert md.startswith(f"# Benchmark: {results['bundle']['bundle_version']}")
    for needle in ("| torch-fp32 | serving |", "| onnx-int8 | held: measured only |",
                   "keyword_rule (baseline)", "tfidf_logreg (baseline)", "## Quality",
                   "`fp_budget:test_hold`", "## Machine", "Pack cold start / bare cold start",
                   "onnx-int8 (pack) |", "Bare onnxruntime + tokenizers on that Optimum-default"):
        assert needle in md
    assert results["files"]["charts"] == ["latency.png", "throughput.png"]
    for chart in results["files"]["charts"]:
        assert (out_dir / chart).read_bytes()[:8] == PNG


def test_default_load_still_refuses_a_held_artifact(held_bundle: Path) -> None:
    text = "My package arrived cracked, please help."
    default = Router.load(held_bundle, artifact="onnx-int8", device="cpu")
    assert not default.ready and default.health()["reason"] == "artifact_held"
    d = default.route(text)
    assert (d.route.value, d.reason.value, d.score) == ("human_review_now", "artifact_held",
                                                        None)
    measured = Router.load(held_bundle, artifact="onnx-int8", device="cpu",
                           allow_held_for_measurement=True)
    assert measured.ready and measured.measurement_only
    assert measured.health()["measurement_only"]
    decisions = measured.route_batch([text, "Where is my refund?", "", None])
    assert all(d.route.value == "human_review_now" for d in decisions)
    assert [d.reason.value for d in decisions[:2]] == ["artifact_held", "artifact_held"]
    scored = measured.route(text)
    assert scored.detail.startswith("measurement_only: would_route=")
    assert "fp_budget:test_hold" in scored.detail and scored.score is None
    serving = Router.load(held_bundle, artifact="onnx-fp32", device="cpu",
                          allow_held_for_measurement=True)
    assert serving.ready and not serving.measurement_only  # eligible: a normal router


def test_soak_reports_rss_growth(held_bundle: Path, tmp_path: Path) -> None:
    results, out_dir = run_soak(SoakConfig(str(held_bundle), 300, ("onnx-fp32",), "cpu", 1,
                                           tmp_path, windows=5))
    assert out_dir == tmp_path
    (r,) = results
    assert r["measured"] and r["tickets"] == 300 and r["mode"] == "serving"
    assert isinstance(r["rss_growth_after_warmup_pct"], float)
    assert r["rss_mb"]["after_warmup"] > 0 and r["rss_mb"]["end"] > 0
    assert r["failures"]["count"] == 0 and r["malformed_inputs"] == 3
    assert len(r["windows"]) == 5
    assert all(w["p50_ms"] <= w["p99_ms"] for w in r["windows"])
    assert r["target"]["met"] == (r["rss_growth_after_warmup_pct"] < 5.0)
    assert json.loads((tmp_path / "soak-onnx-fp32.json").read_text())["tickets"] == 300
    assert (tmp_path / "soak-onnx-fp32.png").read_bytes()[:8] == PNG


def test_tiny_bert_bundle_torch_only(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    config = BenchConfig.quick(str(tiny_bert_bundle), out=tmp_path, device="cpu",
                               artifacts=("torch-fp32", "onnx-int8", "coreml-int8"),
                               baselines=False)
    results, _ = run_bench(config)
    torch_block = results["artifacts"]["torch-fp32"]
    assert torch_block["warm"]["measured"] and torch_block["warm"]["mode"] == "serving"
    assert torch_block["vs_torch_fp32"]["p50_speedup"] == 1.0
    assert results["artifacts"]["onnx-int8"]["skip_reason"].startswith("not in bundle")
    assert results["baselines"] == {}
    assert (tmp_path / "results.md").exists() and (tmp_path / "latency.png").exists()


def test_bench_refuses_rows_that_are_not_the_bundles(tiny_bundle: Path) -> None:
    import dataclasses

    verified = verify_bundle(tiny_bundle)
    assert len(load_texts(verified).test) > 0
    other = dataclasses.replace(verified, manifest=dataclasses.replace(
        verified.manifest, dataset_version="refund-intake-v0+000000000000"))
    with pytest.raises(InputError, match="not this bundle's"):
        load_texts(other)


def test_bench_command_is_registered() -> None:
    from intakegate.cli import app

    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for option in ("--device", "--artifacts", "--out", "--quick", "--soak", "--cold-runs"):
        assert option in result.output
    assert "--hand-built-from" not in result.output  # speed is compared on the same graph only


def test_interleaved_blocks_give_each_variant_the_same_tickets_in_rotating_order() -> None:
    """Load drift must hit the router and the hand-built session alike: same tickets per
    block, and the variant that goes first changes every block."""
    from intakegate.benchmarks.optimum_default import interleaved

    calls: list[tuple[str, str]] = []
    variants = {v: (lambda t, v=v: calls.append((v, t))) for v in ("router", "bare")}
    seconds = interleaved(variants, ["x", "y", "z"], tickets=6, warmup=0, block=3)
    assert [len(s) for s in seconds.values()] == [6, 6]
    assert [v for v, _ in calls] == ["router"] * 3 + ["bare"] * 3 + ["bare"] * 3 + ["router"] * 3
    assert [t for v, t in calls if v == "router"] == [t for v, t in calls if v == "bare"]
