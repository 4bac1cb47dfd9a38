"""ONNX artifacts: fp32 through Optimum (Hugging Face models) or torch.onnx (the tiny encoder),
then int8 through onnxruntime's quantizers (the recipe: intakegate.export.cpu).

Every graph is written as one self-contained `.onnx` file (no external data, nothing beside it)
and checked before it is accepted: the runtime feeds only input_ids, attention_mask and
token_type_ids, and reads `logits`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from intakegate.export.cpu import BlockedMatMuls, Int8Settings
from intakegate.extras import require

log = logging.getLogger(__name__)
OPSET = 18
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "logits"
DYNAMIC_AXES = {"batch": "batch_size", "sequence": "sequence_length"}


class OnnxExportError(RuntimeError):
    """An exported graph that the runtime could not use; the message names the file and why."""


def export_onnx_fp32(model_dir: Path, model_kind: str, out: Path) -> dict[str, Any]:
    """Export the reference model to `out` (a single .onnx file); return the export settings."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if model_kind == "tiny":
        settings = _export_tiny(model_dir, out)
    elif model_kind == "hf-sequence-classification":
        settings = _export_optimum(model_dir, out)
    else:
        raise OnnxExportError(f"manifest field 'model_kind': {model_kind!r} has no ONNX exporter "
                              "(expected 'tiny' or 'hf-sequence-classification')")
    settings.update(check_graph(out))
    return settings


def _export_optimum(model_dir: Path, out: Path) -> dict[str, Any]:
    """Optimum writes config and tokenizer files beside the graph: export to a temporary folder
    and keep only model.onnx."""
    main_export = require("optimum.exporters.onnx", "export").main_export

    with tempfile.TemporaryDirectory(prefix="intakegate-optimum-") as tmp:
        main_export(str(model_dir), tmp, task="text-classification", opset=OPSET, device="cpu",
                    do_validation=False, library_name="transformers", local_files_only=True)
        produced = Path(tmp) / "model.onnx"
        if not produced.is_file():
            raise OnnxExportError(f"optimum produced no model.onnx in {tmp}: "
                                  f"{sorted(p.name for p in Path(tmp).iterdir())}")
        if any(p.suffix in (".onnx_data", ".data") for p in Path(tmp).iterdir()):
            raise OnnxExportError("optimum wrote external weight data; the bundle needs one file")
        shutil.copyfile(produced, out)
    return {"exporter": "optimum.exporters.onnx.main_export", "task": "text-classification",
            "validation": "exact receipt re-gate (optimum's own validation off)"}


def _export_tiny(model_dir: Path, out: Path) -> dict[str, Any]:
    """Optimum cannot export a custom module: use torch's TorchScript exporter with dynamic axes."""
    import torch

    from intakegate.runtime.torch_backend import load_torch_model

    model = load_torch_model(model_dir)
    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    axes = {0: DYNAMIC_AXES["batch"], 1: DYNAMIC_AXES["sequence"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, example, str(out), input_names=["input_ids", "attention_mask"],
                          output_names=[OUTPUT], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        OUTPUT: {0: DYNAMIC_AXES["batch"]}},
                          do_constant_folding=True)
    return {"exporter": "torch.onnx.export (TorchScript, dynamo=False)",
            "task": "text-classification", "do_constant_folding": True}


def check_graph(path: Path) -> dict[str, Any]:
    """Validate an exported graph; return its opset, inputs and dynamic axes for the manifest."""
    onnx = require("onnx", "export")
    model = onnx.load(str(path), load_external_data=False)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxExportError(f"{path}: invalid ONNX graph: {exc}") from None
    external = [t.name for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise OnnxExportError(f"{path}: initializers stored as external data: {external[:3]}")
    inputs = [i.name for i in model.graph.input]
    unknown = [n for n in inputs if n not in GRAPH_INPUTS]
    if unknown or "input_ids" not in inputs:
        raise OnnxExportError(f"{path}: graph inputs {inputs}; expected input_ids plus a subset of "
                              f"{list(GRAPH_INPUTS)}")
    outputs = [o.name for o in model.graph.output]
    if outputs[:1] != [OUTPUT]:
        raise OnnxExportError(f"{path}: first graph output is {outputs[:1]}, expected ['logits']")
    axes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input}
    static = {n: dims for n, dims in axes.items() if not all(isinstance(d, str) for d in dims)}
    if static:
        raise OnnxExportError(f"{path}: batch and sequence axes must be dynamic, got {static}")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": int(opset), "inputs": inputs, "outputs": outputs, "dynamic_axes": axes,
            "external_data": False}


def fuse_bert_graph(fp32: Path, model_dir: Path, out: Path) -> dict[str, Any] | None:
    """Fuse a BERT-family fp32 graph with onnxruntime's transformer optimizer (attention,
    skip layer norm, embedding layer norm, gelu), so quantization can use the fused int8
    attention kernels. Returns the fusion record, or None when the model is not BERT-family.

    Why: on this 2-core AVX2 CPU the fused int8 graph of all-MiniLM-L6-v2 runs a 17-token
    ticket in about 3.2 ms against 4.2 ms unfused, and its session starts in 0.05 s instead of
    0.13 s. The fused graph is only an intermediate: the int8 artifact it yields is re-gated on
    the exact receipt like any other.
    """
    config_path = model_dir / "config.json"
    if not config_path.exists():
        return None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "bert":
        return None
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    optimized = optimize_model(str(fp32), model_type="bert", num_heads=heads,
                               hidden_size=hidden, opt_level=1)
    fused = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    if not fused.get("Attention"):
        log.warning("graph fusion found no attention block to fuse (%s); quantizing the graph "
                    "as exported", fused)
        return {"tool": "onnxruntime.transformers.optimizer", "applied": False,
                "fused_operators": fused}
    optimized.save_model_to_file(str(out))
    return {"tool": "onnxruntime.transformers.optimizer", "applied": True,
            "model_type": "bert", "num_heads": heads, "hidden_size": hidden, "opt_level": 1,
            "fused_operators": fused}


def quantize_onnx_int8(fp32: Path, out: Path, settings: Int8Settings,
                       model_dir: Path | None = None) -> dict[str, Any]:
    """Quantize the fp32 graph (fused first where it is BERT-family) with a recipe of
    `intakegate.export.cpu`: dynamic int8 for its op types (less the MatMuls it leaves to the
    blocks), then, unless the recipe has none, 8-bit block-wise weights for the MatMuls still
    in float."""
    import onnx

    quant_logger = logging.getLogger()
    level = quant_logger.level
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Importing this module calls logging.basicConfig(level=INFO): undo that, keep its
    # per-node progress lines out of the export log.
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.matmul_nbits_quantizer import logger as blocks_logger

    blocks_logger.setLevel(logging.WARNING)
    out.parent.mkdir(parents=True, exist_ok=True)
    fusion = None
    source = fp32
    if model_dir is not None:
        fused_path = fp32.with_name(fp32.stem + ".fused.onnx")
        fusion = fuse_bert_graph(fp32, model_dir, fused_path)
        if fusion and fusion["applied"]:
            source = fused_path
    to_blocks = [n.name for n in onnx.load(str(source)).graph.node
                 if n.op_type == "MatMul" and settings.blocked.picks(n.name)]
    if settings.blocked not in (BlockedMatMuls.NONE, BlockedMatMuls.REMAINING) and not to_blocks:
        log.warning("%s: no MatMul matched %s; the dynamic step quantizes them all",
                    settings.recipe, settings.blocked.value)
    dynamic = out.with_name(out.stem + ".dynamic.onnx")
    quant_logger.setLevel(max(level, logging.ERROR))  # the quantizers log on the root logger
    try:
        quantize_dynamic(source, dynamic, op_types_to_quantize=list(settings.dynamic_op_types),
                         per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                         weight_type=QuantType[settings.weight_type],
                         nodes_to_exclude=to_blocks, use_external_data_format=False,
                         # Fused contrib ops carry no ONNX type info for their outputs.
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        if settings.has_blocks:
            blocks = MatMulNBitsQuantizer(onnx.load(str(dynamic)), bits=settings.block_bits,
                                          block_size=settings.block_size,
                                          accuracy_level=settings.block_accuracy_level,
                                          op_types_to_quantize=settings.block_op_types)
            blocks.process()
            blocks.model.save_model_to_file(str(out), use_external_data_format=False)
        else:
            dynamic.replace(out)
    finally:
        quant_logger.setLevel(level)
        dynamic.unlink(missing_ok=True)
    kinds = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    ops = {k: kinds[k] for k in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention",
                                 "MatMulNBits", "MatMul") if kinds[k]}
    return {**settings.to_json(), "source": "onnx-fp32", "graph_fusion": fusion,
            "quantized_op_counts": ops,
            **check_graph(out)}
