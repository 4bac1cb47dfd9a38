"""The int8 quantization recipe: one configuration for every CPU family onnxruntime may
dispatch to (intakegate.hardware names the families), whose scores re-pass the receipt.

Two steps, both onnxruntime's own quantizers:

1. `quantize_dynamic` on the embedding table and the fused attention block (QKV projection)
   only: uint8 activations against 7-bit per-channel int8 weights (`reduce_range`). On x86 CPUs
   without VNNI the U8S8 kernels sum two u8 x s8 products into a signed 16-bit lane (VPMADDUBSW);
   with 7-bit weights that sum is at most 2 x 255 x 64 = 32640 < 32767, so no family saturates,
   and VNNI and arm64 dot products are exact in 32 bits anyway.
2. `MatMulNBitsQuantizer` (8-bit weights, blocks of 32 along the input axis, accuracy level 4)
   on every other MatMul: the dense projections (attention output, FFN up and down). Activations
   are quantized per block of 32 at run time instead of once per tensor.

Why not dynamic int8 everywhere (the earlier recipe): BERT's dense-layer inputs carry a few
outlier channels, and one per-tensor activation scale flattens everything else. On
refund-intake-minilm-v3 that recipe missed 2 composed required positives (lowest margin -0.124
log-odds); with the dense projections in blocks the same graph re-passes (+0.613), at 24 MB
(reports/refund-intake/studies/int8_variants.py). The family a receipt was computed on is still
recorded, per family, in the artifact's `gates` map: the router admits tickets only on a family
that has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intakegate.hardware import CpuFamily


@dataclass(frozen=True)
class Int8Settings:
    """The two-step int8 configuration (the same for every family)."""

    exported_on: CpuFamily
    weight_type: str = "QInt8"
    activation_type: str = "QUInt8"
    per_channel: bool = True
    reduce_range: bool = True
    dynamic_op_types: tuple[str, ...] = ("Gather", "Attention", "EmbedLayerNormalization")
    block_op_types: tuple[str, ...] = ("MatMul",)
    block_bits: int = 8
    block_size: int = 32
    block_accuracy_level: int = 4
    rationale: str = ("embeddings and fused QKV: U8S8 with 7-bit per-channel weights "
                      "(no VPMADDUBSW saturation on non-VNNI x86); dense projections: 8-bit "
                      "block-wise weights with per-block activation quantization (outlier "
                      "channels do not flatten the rest); one graph for every CPU family")

    def to_json(self) -> dict[str, Any]:
        return {"method": "onnxruntime.quantization.quantize_dynamic, then "
                          "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer",
                "exported_on_cpu_family": self.exported_on.value,
                "portable_cpu_families": [f.value for f in CpuFamily],
                "weight_type": self.weight_type,
                "activation_type": f"{self.activation_type} (dynamic, per tensor)",
                "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "op_types_to_quantize": list(self.dynamic_op_types),
                "block_quantized": {"op_types": list(self.block_op_types),
                                    "bits": self.block_bits, "block_size": self.block_size,
                                    "accuracy_level": self.block_accuracy_level,
                                    "symmetric": False},
                "rationale": self.rationale}


def int8_settings(exported_on: CpuFamily) -> Int8Settings:
    """The portable settings, naming the family the export ran on."""
    return Int8Settings(exported_on)
