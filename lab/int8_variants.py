"""Which int8 recipe re-passes the receipt, at what size and speed? (validation only)

Quantizes the exported bundle's fp32 graph (fused like the export does) several ways, scores
the bundle's own frozen validation inventory through the one scoring path, and gates each run
with the one gate. Prints, per variant: gate reason, required positives missed, the smallest
margin of a required positive over the pinned threshold (log-odds), the largest score change
against torch-fp32 (the export's drift report), the file size and the seconds it took to score
the inventory (compare as ratios within one run). The test split is not opened.

Variants: Optimum's VNNI default (full-range dynamic int8 on every op it quantizes), the
shipped full-range recipe (`onnx-int8-vnni`: the same, FFN-down MatMuls in 8-bit blocks) and a
variant that also blocks the attention-output MatMuls, the earlier recipe (dynamic int8 on every
MatMul, U8S8 7-bit), the same with some MatMuls kept fp32, the shipped two-step recipe
(intakegate.export.cpu: dynamic int8 for embeddings and fused QKV, 8-bit blocks for the dense
MatMuls) with and without int8 compute in the blocks and with QKV kept fp32, and static int8
(QDQ) on the dense MatMuls, its activation ranges calibrated on the model batches of train
rows only (the bundle's own `eval/rows.json`, composed training rows included). A second argument keeps only the variants whose label
contains it (alternatives separated by `|`). "earlier: dynamic int8 on all MatMuls" and the
full-range "everywhere" variant are the export's own faster candidates, `portable-dynamic` and
`full-range-dynamic` (intakegate.export.recipe_search), which it ships where they gate as well
as the model. A third argument, `per_row`, scores a bundle gated before `model_runs` the way
bundles are scored since (each distinct row alone; intakegate.scoring.ticket_score). Tickets are
scored one per core, each row on one thread, as the export's re-gate does.

    # refund-intake-minilm-v6, rows alone: which portable recipe keeps its composition overhead
    .venv/bin/python lab/int8_variants.py bundles/refund-intake/refund-intake-minilm-v6 \
        "accuracy|QKV|earlier: dynamic int8 on all" per_row

    .venv/bin/python lab/int8_variants.py \
        bundles/refund-intake/refund-intake-minilm-v3 [static]
    # b77-minilm-v5 (AVX-512 VNNI), the full-range candidates against the shipped recipe:
    .venv/bin/python lab/int8_variants.py \
        bundles/banking77/b77-minilm-v5 "full-range|shipped|earlier: dynamic int8 on all"
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import intakegate.runtime  # noqa: F401, I001 - before onnxruntime's telemetry (see README)
import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_dynamic, quantize_static)

from intakegate.bundle import VerifiedBundle, verify_bundle
from intakegate.bundle.paths import EVAL_ROWS
from intakegate.receipt.composed import composed_training_rows
from intakegate.export.backends import onnx_backend
from intakegate.export.cpu import (BlockedMatMuls, Int8Settings, int8_settings,
                                   vnni_int8_settings)
from intakegate.receipt.fixtures import parse_eval_rows
from intakegate.export.onnx_export import fuse_bert_graph, quantize_onnx_int8
from intakegate.export.regate import load_inventory, scoring_inputs
from intakegate.benchmarks.machine import cpu_model
from intakegate.hardware import detect_cpu_family
from intakegate.parallel import cpu_workers
from intakegate.scoring.ticket_score import ScoreSpec, score_texts
from variant_gate import gate_variant

EARLIER_OP_TYPES = ["MatMul", "Gather", "Attention", "EmbedLayerNormalization"]
# (fp32 graph, its fused graph, a folder holding the model's config.json, output, settings)
Builder = Callable[[Path, Path, Path, Path, Int8Settings], None]


def _dynamic_everywhere(fp32_matmuls: str | None) -> Builder:
    """The earlier recipe, keeping MatMuls whose name contains `fp32_matmuls` in fp32."""
    def build(_fp32: Path, fused: Path, _model_dir: Path, out: Path,
              settings: Int8Settings) -> None:
        names = [n.name for n in onnx.load(str(fused)).graph.node if n.op_type == "MatMul"]
        exclude = [n for n in names if fp32_matmuls and fp32_matmuls in n]
        quantize_dynamic(fused, out, op_types_to_quantize=EARLIER_OP_TYPES,
                         per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                         weight_type=QuantType[settings.weight_type], nodes_to_exclude=exclude,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return build


def _dynamic_full_range(_fp32: Path, fused: Path, _model_dir: Path, out: Path,
                       settings: Int8Settings) -> None:
    """Optimum's own default for AVX-512 VNNI and arm64 (`AutoQuantizationConfig.avx512_vnni(
    is_static=False, per_channel=True)`: every integer op, 8-bit per-channel weights, no
    reduce_range) on the fused graph. Exact only where dot products are 32-bit (VNNI, arm64):
    on other x86 CPUs the u8 x s8 pair sums saturate at 16 bits, so it is gated per family."""
    quantize_dynamic(fused, out, per_channel=True, reduce_range=False,
                     weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _full_range_also_attention_output(fp32: Path, _fused: Path, model_dir: Path, out: Path,
                                      settings: Int8Settings) -> None:
    """The shipped full-range recipe with the attention-output MatMuls in 8-bit blocks too
    (`BlockedMatMuls.OUTPUT_DENSE`: every `/output/dense/MatMul`)."""
    chosen = replace(vnni_int8_settings(settings.exported_on),
                     blocked=BlockedMatMuls.OUTPUT_DENSE)
    quantize_onnx_int8(fp32, out, chosen, model_dir)


def _shipped_full_range(fp32: Path, _fused: Path, model_dir: Path, out: Path,
                        settings: Int8Settings) -> None:
    """The export's own `onnx-int8-vnni` recipe (intakegate.export.cpu.vnni_int8_settings)."""
    quantize_onnx_int8(fp32, out, vnni_int8_settings(settings.exported_on), model_dir)


def _two_step(accuracy_level: int, dynamic_op_types: tuple[str, ...] | None = None) -> Builder:
    """The export's own recipe (fused inside), with the blocks' accuracy level as given and,
    optionally, fewer op types in the dynamic step (the rest stays fp32)."""
    def build(fp32: Path, _fused: Path, model_dir: Path, out: Path,
              settings: Int8Settings) -> None:
        chosen = replace(settings, block_accuracy_level=accuracy_level)
        if dynamic_op_types is not None:
            chosen = replace(chosen, dynamic_op_types=dynamic_op_types)
        quantize_onnx_int8(fp32, out, chosen, model_dir)
    return build


class _Feeds(CalibrationDataReader):
    """The calibration batches, exactly as the scoring path fed them to the fp32 graph."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _static_dense(feeds: Sequence[dict[str, np.ndarray]], with_dynamic_qkv: bool) -> Builder:
    """Static int8 (QDQ, U8S8, per-channel weights) on the dense MatMuls of the fused graph,
    activation ranges calibrated (min/max) on train rows; the fused attention (QKV) either kept
    fp32 or quantized dynamically first, as the shipped recipe does."""
    def build(_fp32: Path, fused: Path, _model_dir: Path, out: Path,
              settings: Int8Settings) -> None:
        source = fused
        if with_dynamic_qkv:
            source = out.with_name(out.stem + ".qkv.onnx")
            quantize_dynamic(fused, source, op_types_to_quantize=list(settings.dynamic_op_types),
                             per_channel=settings.per_channel,
                             reduce_range=settings.reduce_range,
                             weight_type=QuantType[settings.weight_type],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        quantize_static(source, out, _Feeds(feeds), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul"], per_channel=settings.per_channel,
                        reduce_range=settings.reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return build


def calibration_feeds(bundle: VerifiedBundle, tokenizer: Any, spec: ScoreSpec,
                      n: int = 160) -> list[dict[str, np.ndarray]]:
    """Every model batch the scoring path builds for `n` train tickets (and as many composed
    training rows), recorded while the fp32 graph scores them. Train rows only: the receipt's
    validation rows choose nothing."""
    train = list(parse_eval_rows(bundle.read(EVAL_ROWS)).train)
    picked = train[::max(1, len(train) // n)][:n]
    picked += composed_training_rows(train, n / len(train), seed=5)
    fp32 = onnx_backend(bundle.read(bundle.manifest.artifacts["onnx-fp32"].path),
                         quantized=False)
    names = fp32.logits.input_names
    feeds: list[dict[str, np.ndarray]] = []

    def record(windows: Any) -> Any:
        feeds.append({name: getattr(windows, name) for name in names})
        return fp32(windows)

    with fp32:
        score_texts(record, tokenizer, [r.text for r in picked], spec)
    return feeds


def variants(feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, Builder]:
    return {
        "earlier: dynamic int8 on all MatMuls": _dynamic_everywhere(None),
        "earlier, attention-output and FFN-down fp32": _dynamic_everywhere("/output/dense/MatMul"),
        "earlier, all dense projections fp32": _dynamic_everywhere("/dense/MatMul"),
        "full-range dynamic int8 everywhere (Optimum's VNNI default, fused graph)":
            _dynamic_full_range,
        "full-range dynamic, FFN-down MatMuls in 8-bit blocks (onnx-int8-vnni, shipped)":
            _shipped_full_range,
        "full-range dynamic, attention-output and FFN-down MatMuls in 8-bit blocks":
            _full_range_also_attention_output,
        "two-step, QKV dynamic, blocks with fp32 compute (accuracy 0)":
            _two_step(0, ("Gather", "Attention", "EmbedLayerNormalization")),
        "two-step, QKV dynamic, blocks with int8 compute (accuracy 4, shipped until v6)":
            _two_step(4, ("Gather", "Attention", "EmbedLayerNormalization")),
        "two-step, QKV kept fp32 (embeddings dynamic, blocks accuracy 4, shipped)": _two_step(4),
        "static QDQ on dense MatMuls, QKV fp32": _static_dense(feeds, False),
        "static QDQ on dense MatMuls, QKV dynamic": _static_dense(feeds, True),
    }


def main(bundle_dir: str, only: str = "", model_runs: str = "") -> None:
    bundle = verify_bundle(Path(bundle_dir))
    m = bundle.manifest
    inventory = load_inventory(bundle)
    tokenizer, spec = scoring_inputs(bundle)
    if model_runs:
        spec = replace(spec, policy=replace(spec.policy, model_runs=model_runs))
    workers = cpu_workers()
    ids = list(inventory.spec.fixture_ids)
    texts = [inventory.texts[f] for f in ids]
    settings = int8_settings(detect_cpu_family())
    tmp = Path(tempfile.mkdtemp(prefix="int8-variants-"))
    model_dir = tmp / "config"
    model_dir.mkdir()
    (model_dir / "config.json").write_bytes(bundle.read("model/torch-fp32/config.json"))
    fp32 = tmp / "fp32.onnx"
    fp32.write_bytes(bundle.read(m.artifacts["onnx-fp32"].path))
    fused = tmp / "fused.onnx"
    fuse_bert_graph(fp32, model_dir, fused)
    feeds = calibration_feeds(bundle, tokenizer, spec)
    print(json.dumps({"calibration_batches": len(feeds)}), flush=True)
    results = []
    for label, build in variants(feeds).items():
        if only and not any(part in label for part in only.split("|")):
            continue
        out = tmp / f"v{len(results)}.onnx"
        build(fp32, fused, model_dir, out, settings)
        backend = onnx_backend(out.read_bytes(), quantized=True, workers=workers)
        started = time.perf_counter()
        with backend:
            scores = [s.score for s in score_texts(backend, tokenizer, texts, spec,
                                                   workers=workers)]
        seconds = time.perf_counter() - started
        results.append({**gate_variant(bundle, inventory, label, scores),
                        "size_mb": round(out.stat().st_size / 1e6, 2),
                        "score_inventory_s": round(seconds, 1),
                        "cpu_family": backend.details["cpu_family"],
                        "cpu_model": cpu_model(),
                        "model_runs": spec.policy.model_runs, "workers": workers})
        print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
