"""Which parts of the encoder can stay int8 and still re-pass the receipt? (validation only)

Quantizes the exported bundle's fp32 graph (fused like the export does) with the export's
portable settings, each variant keeping a different set of MatMuls in fp32, scores the bundle's
own frozen validation inventory through the one scoring path, and gates each run with the one
gate. Prints, per variant: gate reason, required positives missed, the smallest margin of a
required positive over the pinned threshold (log-odds), the largest score change against
torch-fp32 (the export's drift report), and the file size. The test split is not opened.

    .venv/bin/python reports/refund-intake/studies/int8_variants.py bundles/refund-intake/refund-intake-minilm-v3
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

import intakegate.runtime  # noqa: F401 - before onnxruntime's telemetry (see README)
from intakegate.bundle import verify_bundle
from intakegate.export.backends import _onnx_backend
from intakegate.export.cpu import int8_settings
from intakegate.export.drift import drift_report
from intakegate.export.onnx_export import fuse_bert_graph
from intakegate.export.regate import load_inventory
from intakegate.gate import GateRow, release_decision
from intakegate.hardware import detect_cpu_family
from intakegate.lexical import blend_from_entry, log_odds
from intakegate.ticket_score import ScoreSpec, score_texts

VARIANTS: dict[str, str | None] = {
    "all MatMuls int8 (shipped)": None,
    "attention-output and FFN-down projections fp32": "/output/dense/MatMul",
    "all dense projections fp32 (Q/K/V and embeddings int8)": "/dense/MatMul",
    "last layer fp32": "layer.5/",
}


def main(bundle_dir: str) -> None:
    bundle = verify_bundle(Path(bundle_dir))
    m = bundle.manifest
    inventory = load_inventory(bundle)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(bundle.read(m.tokenizer).decode("utf-8"))
    spec = ScoreSpec(m.input_policy, m.score_head.positive, len(m.score_head.labels),
                     tokenizer.get_vocab_size(with_added_tokens=True), None,
                     blend_from_entry(m.score_blend, bundle.read))
    ids = list(inventory.spec.fixture_ids)
    texts = [inventory.texts[f] for f in ids]
    ref = {r.fixture_id: r for r in inventory.reference.rows}
    required = set(inventory.spec.required_slices)
    settings = int8_settings(detect_cpu_family())
    tmp = Path(tempfile.mkdtemp(prefix="int8-variants-"))
    fp32 = tmp / "fp32.onnx"
    fp32.write_bytes(bundle.read(m.artifacts["onnx-fp32"].path))
    fused = tmp / "fused.onnx"
    with tempfile.TemporaryDirectory() as model_dir:
        (Path(model_dir) / "config.json").write_bytes(bundle.read("model/torch-fp32/config.json"))
        fuse_bert_graph(fp32, Path(model_dir), fused)
    import onnx

    names = [n.name for n in onnx.load(str(fused)).graph.node if n.op_type == "MatMul"]
    results = []
    for label, pattern in VARIANTS.items():
        exclude = [n for n in names if pattern and pattern in n]
        out = tmp / f"v{len(results)}.onnx"
        quantize_dynamic(fused, out, op_types_to_quantize=list(settings.op_types),
                         per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                         weight_type=QuantType[settings.weight_type], nodes_to_exclude=exclude,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        backend = _onnx_backend(out.read_bytes(), quantized=True)
        with backend:
            scores = [s.score for s in score_texts(backend, tokenizer, texts, spec)]
        rows = tuple(GateRow(f, ref[f].slice, ref[f].gold, s) for f, s in zip(ids, scores))
        gate = release_decision(inventory.spec, replace(inventory.reference, rows=rows))
        margins = [float(log_odds(r.score) - log_odds(bundle.threshold)) for r in rows
                   if r.slice in required and r.gold == 1 and r.score is not None]
        drift = drift_report(label, rows, inventory.reference_scores, bundle.threshold,
                             inventory.spec.required_slices)
        results.append({"variant": label, "fp32_matmuls": len(exclude), "gate": gate.reason,
                        "required_missed": len(gate.missed),
                        "min_margin_logit": round(min(margins), 4),
                        "max_abs_score_delta_vs_torch": round(drift["max_abs_delta"], 4),
                        "size_mb": round(out.stat().st_size / 1e6, 2),
                        "cpu_family": backend.details["cpu_family"]})
        print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
