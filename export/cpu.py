"""The int8 quantization settings: one configuration that is numerically safe on every CPU
family onnxruntime may dispatch to (intakegate.hardware names the families).

Dynamic quantization runs uint8 activations against int8 weights (onnxruntime's U8S8). On x86
CPUs without VNNI (AVX2, plain AVX-512) the kernels use VPMADDUBSW, which sums two u8 x s8
products into a signed 16-bit lane: with full-range weights (|w| <= 127) that sum reaches
2 x 255 x 127 = 64770 and saturates. With 7-bit weights (`reduce_range`, |w| <= 64) it stays at
most 2 x 255 x 64 = 32640 < 32767, so no family saturates: VNNI (VPDPBUSD) and arm64 dot products
accumulate exactly in 32 bits anyway. The same graph therefore computes the same integer
products on every family, and only float rounding after them differs. Measured on the tiny BERT
fixture on an AVX2 machine: full-range weights flipped 43 of 64 validation routes, 7-bit
per-channel weights none. Earlier exports picked full range on VNNI and arm64; a graph exported
there could not run safely on an AVX2 desktop. The family a receipt was computed on is still
recorded, per family, in the artifact's `gates` map: the router admits tickets only on a family
that has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intakegate.hardware import CpuFamily


@dataclass(frozen=True)
class Int8Settings:
    """The `quantize_dynamic` configuration (the same for every family)."""

    exported_on: CpuFamily
    weight_type: str = "QInt8"
    activation_type: str = "QUInt8"
    per_channel: bool = True
    reduce_range: bool = True
    op_types: tuple[str, ...] = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")
    rationale: str = ("U8S8 with 7-bit per-channel weights (reduce_range): the non-VNNI x86 "
                      "kernels (VPMADDUBSW) cannot saturate, VNNI and arm64 are exact; one graph "
                      "for every CPU family")

    def to_json(self) -> dict[str, Any]:
        return {"method": "onnxruntime.quantization.quantize_dynamic",
                "exported_on_cpu_family": self.exported_on.value,
                "portable_cpu_families": [f.value for f in CpuFamily],
                "weight_type": self.weight_type,
                "activation_type": f"{self.activation_type} (dynamic, per tensor)",
                "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "op_types_to_quantize": list(self.op_types), "rationale": self.rationale}


def int8_settings(exported_on: CpuFamily) -> Int8Settings:
    """The portable settings, naming the family the export ran on."""
    return Int8Settings(exported_on)
