"""Core ML artifacts: an fp16 ML Program and its int8-weight variant, as `.mlpackage` folders.

The model is traced with example windows and converted with flexible batch and sequence sizes
(the sequence up to the bundle's max_length), so a client scores windows exactly as the input
policy builds them. Conversion runs anywhere; predictions need macOS, so the gate status of these
artifacts is decided elsewhere (`intakegate.export.backends`).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.extras import require

log = logging.getLogger(__name__)
DEPLOYMENT_TARGET = "macOS13"  # ML Program + per-channel int8 weights (constexpr ops) need 13+
MAX_BATCH = 64
INT8_MIN_WEIGHTS = 2048  # smaller tensors (biases, the 2-label head) stay fp16
# Symmetric int8 per output channel, every weight. On refund-intake one other variant re-passed
# where this one misses composed positives (a zero point per channel and the query/key/value
# weights kept fp16, by a hair), but on the tiny BERT test bundle that variant drifted past the
# tolerance and missed a composed positive, so it is not shipped (measured: lab/README.md,
# coreml_int8_variants).
INT8_MODE = "linear_symmetric"
INT8_KEEP_FP16: tuple[str, ...] = ()
OUTPUT = "logits"


class CoreMLExportError(RuntimeError):
    """Conversion failed; the artifact is not written (never skipped silently)."""


def _wrapped(model: Any, model_kind: str, with_token_types: bool) -> Any:
    """A module with positional tensor inputs and a plain logits output, traceable by torch.jit."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            if model_kind == "tiny":
                return self.model(input_ids, attention_mask)
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask,
                      "return_dict": False}
            if with_token_types:
                kwargs["token_type_ids"] = token_type_ids
            return self.model(**kwargs)[0]

    return LogitsOnly().eval()


def input_names(model: Any, model_kind: str) -> list[str]:
    """The tokenizer outputs the model consumes: token types only where the model takes them."""
    from intakegate.runtime.torch_backend import TorchLogits

    names = ["input_ids", "attention_mask"]
    if model_kind != "tiny" and TorchLogits(model).takes_token_types:
        names.append("token_type_ids")
    return names


def convert_coreml(model_dir: Path, model_kind: str, max_length: int, fp16_out: Path | None,
                   int8_out: Path | None) -> dict[str, dict[str, Any]]:
    """Write the requested packages; returns export settings keyed 'fp16' / 'int8'."""
    ct_log = logging.getLogger("coremltools")
    ct_log.setLevel(logging.ERROR)  # off macOS its import warns about each missing native proxy
    ct = require("coremltools", "export")
    cto = require("coremltools.optimize.coreml", "export")
    ct_log.setLevel(logging.WARNING)  # and it logs every MIL pass at INFO
    import torch

    from intakegate.runtime.torch_backend import load_torch_model

    started = time.monotonic()
    model = load_torch_model(model_dir)
    names = input_names(model, model_kind)
    module = _wrapped(model, model_kind, "token_type_ids" in names)
    example = tuple(torch.ones((2, min(16, max_length)), dtype=torch.long) for _ in names)
    batch = ct.RangeDim(lower_bound=1, upper_bound=MAX_BATCH, default=1, symbol="batch")
    seq = ct.RangeDim(lower_bound=1, upper_bound=max_length, default=min(16, max_length),
                      symbol="sequence")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example, strict=False)
            fp16 = ct.convert(traced, convert_to="mlprogram",
                              inputs=[ct.TensorType(name=n, shape=(batch, seq), dtype=np.int32)
                                      for n in names],
                              outputs=[ct.TensorType(name=OUTPUT)],
                              compute_precision=ct.precision.FLOAT16,
                              minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET))
    except Exception as exc:  # noqa: BLE001 - any converter failure is reported with its cause
        raise CoreMLExportError(f"coremltools could not convert the {model_kind} model from "
                                f"{model_dir}: {type(exc).__name__}: {exc}") from exc
    common = {"converter": "coremltools.convert (torch.jit.trace)", "model_type": "mlprogram",
              "minimum_deployment_target": DEPLOYMENT_TARGET,
              "specification_version": int(fp16.get_spec().specificationVersion),
              "compute_precision": "FLOAT16", "inputs": names, "input_dtype": "int32",
              "outputs": [OUTPUT],
              "flexible_shape": {"batch": [1, MAX_BATCH], "sequence": [1, max_length]}}
    out: dict[str, dict[str, Any]] = {}
    if fp16_out is not None:
        fp16_out.parent.mkdir(parents=True, exist_ok=True)
        fp16.save(str(fp16_out))
        out["fp16"] = {**common, "export_seconds": round(time.monotonic() - started, 2)}
    started = time.monotonic()
    if int8_out is not None:
        try:
            config, kept = int8_config(cto, fp16)
            # All-zero channels (e.g. a padding embedding row) get scale 0; numpy warns about
            # the 0/0 it computes for them, and the dequantized weights are still exactly 0.
            with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                int8 = cto.linear_quantize_weights(fp16, config=config)
        except Exception as exc:  # noqa: BLE001
            raise CoreMLExportError(f"int8 weight quantization failed: {type(exc).__name__}: "
                                    f"{exc}") from exc
        int8_out.parent.mkdir(parents=True, exist_ok=True)
        int8.save(str(int8_out))
        out["int8"] = {**common, "weight_quantization": {
            "method": "coremltools.optimize.coreml.linear_quantize_weights",
            "mode": INT8_MODE, "dtype": "int8", "granularity": "per_channel",
            "weight_threshold": INT8_MIN_WEIGHTS, "kept_fp16": kept, "source": "coreml-fp16"},
            "export_seconds": round(time.monotonic() - started, 2)}
    return out


def int8_config(cto: Any, fp16: Any, mode: str = INT8_MODE,
                keep_fp16: tuple[str, ...] = INT8_KEEP_FP16) -> tuple[Any, list[str]]:
    """The int8 weight config for an fp16 package: every weight of at least INT8_MIN_WEIGHTS
    values per output channel in `mode`, except those whose name contains one of `keep_fp16`
    (returned, sorted, for the export settings)."""
    weights = cto.get_weights_metadata(fp16, weight_threshold=INT8_MIN_WEIGHTS)
    kept = sorted(name for name in weights if any(k in name for k in keep_fp16))
    base = cto.OpLinearQuantizerConfig(mode=mode, dtype="int8", granularity="per_channel",
                                       weight_threshold=INT8_MIN_WEIGHTS)
    return cto.OptimizationConfig(global_config=base,
                                  op_name_configs={name: None for name in kept}), kept
