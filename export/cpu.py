"""The CPU family an int8 ONNX artifact is built and gated for, and its quantization settings.

Dynamic quantization runs uint8 activations against int8 weights (onnxruntime's U8S8). On x86
CPUs without VNNI (AVX2, plain AVX-512) the int8 kernels use VPMADDUBSW, whose 16-bit
intermediate sums can saturate; onnxruntime's remedy is 7-bit weights (`reduce_range`). VNNI and
ARM64 dot-product kernels do not saturate, so they keep the full 8-bit range. Measured on the
tiny BERT fixture on an AVX2 machine: full-range int8 weights flipped 43 of 64 validation routes,
7-bit per-channel weights flipped none. The family is recorded in the manifest because the same
int8 graph computes slightly different scores on another family: its receipt holds for the
family it was gated on.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any


class CpuFamily(str, Enum):
    """The integer-kernel families onnxruntime dispatches to."""

    AVX512_VNNI = "avx512_vnni"
    AVX2 = "avx2"
    ARM64 = "arm64"
    X86_NO_AVX2 = "x86_no_avx2"


@dataclass(frozen=True)
class Int8Settings:
    """The `quantize_dynamic` configuration for one CPU family."""

    cpu_family: CpuFamily
    weight_type: str = "QInt8"
    activation_type: str = "QUInt8"
    per_channel: bool = True
    reduce_range: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")
    rationale: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"method": "onnxruntime.quantization.quantize_dynamic",
                "cpu_family": self.cpu_family.value, "weight_type": self.weight_type,
                "activation_type": f"{self.activation_type} (dynamic, per tensor)",
                "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "op_types_to_quantize": list(self.op_types), "rationale": self.rationale}


def _cpu_flags() -> set[str]:
    """Feature flags from /proc/cpuinfo (Linux) or sysctl (macOS); empty when unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags") or line.startswith("Features"):
                return set(line.split(":", 1)[1].lower().split())
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features",
                                  "machdep.cpu.leaf7_features"], capture_output=True, text=True,
                                 timeout=5, check=False).stdout
        except OSError:
            return set()
        return {f.lower().replace(".", "_") for f in out.split()}
    return set()


def detect_cpu_family(machine: str | None = None, flags: set[str] | None = None) -> CpuFamily:
    """The family of this machine (arguments exist so the mapping can be tested)."""
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64", "armv8", "armv8l"):
        return CpuFamily.ARM64
    flags = _cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return CpuFamily.AVX512_VNNI
    if "avx2" in flags:
        return CpuFamily.AVX2
    if not flags:
        # Unknown flags (e.g. Windows): 7-bit weights are correct on every x86 family.
        return CpuFamily.AVX2
    return CpuFamily.X86_NO_AVX2


def int8_settings(family: CpuFamily) -> Int8Settings:
    """Per-channel int8 weights everywhere; 7-bit weights where U8S8 kernels can saturate."""
    if family in (CpuFamily.AVX512_VNNI, CpuFamily.ARM64):
        return Int8Settings(family, reduce_range=False,
                            rationale="VNNI/ARM64 dot-product kernels do not saturate: full "
                                      "8-bit per-channel weights")
    return Int8Settings(family, reduce_range=True,
                        rationale="non-VNNI x86 U8S8 kernels (VPMADDUBSW) can saturate: 7-bit "
                                  "per-channel weights (reduce_range)")
