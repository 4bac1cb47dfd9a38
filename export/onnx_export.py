"""ONNX artifacts: fp32 through Optimum (Hugging Face models) or torch.onnx (the tiny encoder),
then dynamic int8 through onnxruntime's quantizer.

Every graph is written as one self-contained `.onnx` file (no external data, nothing beside it)
and checked before it is accepted: the runtime feeds only input_ids, attention_mask and
token_type_ids, and reads `logits`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from intakegate.export.cpu import Int8Settings
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


def quantize_onnx_int8(fp32: Path, out: Path, settings: Int8Settings) -> dict[str, Any]:
    """Dynamic int8 quantization of the fp32 graph with the settings for the target CPU family."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.parent.mkdir(parents=True, exist_ok=True)
    quant_logger = logging.getLogger()
    level = quant_logger.level
    quant_logger.setLevel(max(level, logging.ERROR))  # the quantizer warns on the root logger
    try:
        quantize_dynamic(fp32, out, op_types_to_quantize=list(settings.op_types),
                         per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                         weight_type=QuantType[settings.weight_type],
                         use_external_data_format=False)
    finally:
        quant_logger.setLevel(level)
    return {**settings.to_json(), "source": "onnx-fp32", **check_graph(out)}
