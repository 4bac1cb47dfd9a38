"""The int8 quantization recipes, both built from onnxruntime's own quantizers.

`onnx-int8` (portable): one graph for every CPU family onnxruntime may dispatch to
(intakegate.hardware names the families), whose scores re-pass the receipt.

1. `quantize_dynamic` on the embedding table only: uint8 activations against 7-bit per-channel
   int8 weights (`reduce_range`). On x86 CPUs without VNNI the U8S8 kernels sum two u8 x s8
   products into a signed 16-bit lane (VPMADDUBSW); with 7-bit weights that sum is at most
   2 x 255 x 64 = 32640 < 32767, so no family saturates, and VNNI and arm64 dot products are
   exact in 32 bits anyway. The fused attention block (the QKV projection) stays fp32: with
   it dynamically quantized, refund-intake-minilm-v6's routine pairs went to people 0.052 more
   often than their parts explain (its maximum: 0.05), with it in fp32 +0.046, as in torch,
   for 8 MB more (measured: lab/README.md, int8_variants).
2. `MatMulNBitsQuantizer` (8-bit weights, blocks of 32 along the input axis, accuracy level 4)
   on every other MatMul: the dense projections (attention output, FFN up and down). Activations
   are quantized per block of 32 at run time instead of once per tensor.

Why not dynamic int8 everywhere (the earlier recipe): BERT's dense-layer inputs carry a few
outlier channels, and one per-tensor activation scale flattens everything else. On refund-intake
that recipe missed composed required positives; with the dense projections in blocks the same
graph re-passes, at about the size of the dynamic graph (measured: lab/README.md, int8_variants).

`onnx-int8-vnni` (full range, AVX-512 VNNI and arm64 only): step 1 takes every op Optimum's
VNNI default quantizes, with full 8-bit weights (no `reduce_range`), except the FFN-down
MatMuls, whose inputs (the GELU outputs) carry the outliers; only those go to 8-bit blocks.
The 8-bit blocks are the slow part of the portable graph on a VNNI CPU: on banking77 this
recipe scores the receipt faster at the same gate, where Optimum's default itself misses a
required positive (measured: lab/README.md, int8_variants).
Full-range weights saturate VPMADDUBSW, so the artifact is exported, gated and served only on
`EXACT_DOT_FAMILIES` (intakegate.bundle.cpu_family_exactness_refusal).

Each artifact also has a faster candidate, tried first at export (`recipe_search.py`): the
same quantizer with no MatMul left to blocks, so every dense projection runs as one fused
DynamicQuantizeMatMul. On banking77's 3-layer student both faster graphs score the receipt
faster than the full-range two-step graph and keep the model's gate; on its teacher and on
refund-intake they miss required positives (measured: lab/README.md, int8_variants). So the
receipt picks per model: a candidate is kept only when its gate is as good as the reference
model's own (`recipe_search`), else the export falls back to the recipe above.

The family a receipt was computed on is recorded, per family, in the artifact's `gates` map:
the router admits tickets only on a family that has one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from intakegate.hardware import EXACT_DOT_FAMILIES, CpuFamily


class BlockedMatMuls(str, Enum):
    """Which MatMuls the second step puts in 8-bit blocks."""

    NONE = "none: the dynamic step quantizes every MatMul and there is no second step"
    REMAINING = "every MatMul the dynamic step left in float"
    FFN_DOWN = "the FFN-down MatMuls only (inputs: the GELU outputs)"
    OUTPUT_DENSE = "the FFN-down and attention-output MatMuls (measured, not shipped)"

    def picks(self, node_name: str) -> bool:
        """Whether the dynamic step must leave this MatMul to the blocks (by its exported
        name: HF BERT graphs name FFN-down `.../layer.N/output/dense/MatMul`)."""
        if self in (BlockedMatMuls.NONE, BlockedMatMuls.REMAINING):
            return False  # all MatMuls stay with the dynamic step, or it does not take any
        output_dense = node_name.endswith("/output/dense/MatMul")
        if self is BlockedMatMuls.OUTPUT_DENSE:
            return output_dense
        return output_dense and "/attention/" not in node_name


@dataclass(frozen=True)
class Int8Settings:
    """A two-step int8 configuration: dynamic int8, then 8-bit blocks."""

    exported_on: CpuFamily
    recipe: str = "portable"
    cpu_families: tuple[CpuFamily, ...] = tuple(CpuFamily)  # where its kernels are exact
    weight_type: str = "QInt8"
    activation_type: str = "QUInt8"
    per_channel: bool = True
    reduce_range: bool = True
    dynamic_op_types: tuple[str, ...] = ("Gather", "EmbedLayerNormalization")
    block_op_types: tuple[str, ...] = ("MatMul",)
    blocked: BlockedMatMuls = BlockedMatMuls.REMAINING
    block_bits: int = 8
    block_size: int = 32
    block_accuracy_level: int = 4
    rationale: str = ("embeddings: U8S8 with 7-bit per-channel weights (no VPMADDUBSW "
                      "saturation on non-VNNI x86); fused QKV in fp32; dense projections: "
                      "8-bit block-wise weights with per-block activation quantization "
                      "(outlier channels do not flatten the rest); one graph for every CPU "
                      "family")

    def to_json(self) -> dict[str, Any]:
        blocks = (", then onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer"
                  if self.has_blocks else "")
        return {"method": f"onnxruntime.quantization.quantize_dynamic{blocks}",
                "recipe": self.recipe,
                "exported_on_cpu_family": self.exported_on.value,
                "cpu_families": [f.value for f in self.cpu_families],
                "weight_type": self.weight_type,
                "activation_type": f"{self.activation_type} (dynamic, per tensor)",
                "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "op_types_to_quantize": list(self.dynamic_op_types),
                "block_quantized": None if not self.has_blocks else {
                    "op_types": list(self.block_op_types), "which": self.blocked.name.lower(),
                    "bits": self.block_bits, "block_size": self.block_size,
                    "accuracy_level": self.block_accuracy_level, "symmetric": False},
                "rationale": self.rationale}

    @property
    def has_blocks(self) -> bool:
        """Whether the second (8-bit blocks) step runs at all."""
        return self.blocked is not BlockedMatMuls.NONE


def int8_settings(exported_on: CpuFamily) -> Int8Settings:
    """The portable settings, naming the family the export ran on."""
    return Int8Settings(exported_on)


def vnni_int8_settings(exported_on: CpuFamily) -> Int8Settings:
    """The full-range settings (`onnx-int8-vnni`), naming the family the export ran on."""
    return Int8Settings(
        exported_on, recipe="full-range", cpu_families=EXACT_DOT_FAMILIES, reduce_range=False,
        dynamic_op_types=("MatMul", "Attention", "Gather", "EmbedLayerNormalization"),
        blocked=BlockedMatMuls.FFN_DOWN,
        rationale=("full-range 8-bit per-channel weights on every dynamically quantized op "
                   "(exact where dot products accumulate in 32 bits: AVX-512 VNNI, arm64); "
                   "the FFN-down MatMuls, whose inputs carry outlier channels, in 8-bit blocks"))


def dynamic_everywhere(settings: Int8Settings) -> Int8Settings:
    """The faster candidate of a recipe: its dynamic step on every MatMul too, no blocks (the
    portable one keeps 7-bit weights, so it stays exact on every family)."""
    return replace(settings, recipe=f"{settings.recipe}-dynamic",
                   dynamic_op_types=tuple(dict.fromkeys(("MatMul", *settings.dynamic_op_types))),
                   blocked=BlockedMatMuls.NONE,
                   rationale=(f"the {settings.recipe} recipe's dynamic int8 on every MatMul "
                              "(one fused DynamicQuantizeMatMul per projection, no 8-bit "
                              "blocks): faster, kept only where the receipt shows the model's "
                              "outlier channels cost it nothing"))


def int8_candidates(exported_on: CpuFamily) -> tuple[Int8Settings, ...]:
    """`onnx-int8` recipes, fastest first; the export keeps the first that gates as well as the
    reference model, and the last one whatever its gate."""
    safe = int8_settings(exported_on)
    return dynamic_everywhere(safe), safe


def vnni_int8_candidates(exported_on: CpuFamily) -> tuple[Int8Settings, ...]:
    """`onnx-int8-vnni` recipes, fastest first (as `int8_candidates`)."""
    safe = vnni_int8_settings(exported_on)
    return dynamic_everywhere(safe), safe
