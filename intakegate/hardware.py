"""The CPU family and device class this process runs on: one stdlib-only module for export,
gate and runtime alike (the runtime must not import the export stage to learn its own CPU).

onnxruntime dispatches int8 kernels per CPU family: x86 with AVX-512 VNNI, x86 with AVX2 but no
VNNI (VPMADDUBSW, whose 16-bit pair sums saturate on full-range weights), older x86, and arm64
dot-product kernels. A receipt of a quantized artifact is recorded per family, and the router
admits tickets only on a family some receipt was computed on.

`INTAKEGATE_CPU_FAMILY` declares the family instead of detecting it (tests, and machines whose
flags cannot be read); an unknown value is an error naming the accepted ones.
"""

from __future__ import annotations

import os
import platform
import sys
from enum import Enum
from pathlib import Path

FAMILY_ENV = "INTAKEGATE_CPU_FAMILY"
CPU_GATE_PREFIX = "onnxruntime-cpu-"  # + a family: a quantized artifact's `gates` key


class CpuFamily(str, Enum):
    """The integer-kernel families onnxruntime dispatches to."""

    AVX512_VNNI = "avx512_vnni"
    AVX2 = "avx2"
    ARM64 = "arm64"
    X86_NO_AVX2 = "x86_no_avx2"


# Families whose u8 x s8 dot products accumulate in 32 bits (VNNI VPDPBUSD, arm64 SDOT/I8MM):
# full-range (8-bit) int8 weights are exact there. AVX2 without VNNI sums pairs of products
# into a saturating 16-bit lane (VPMADDUBSW), so full-range weights are not safe on it.
EXACT_DOT_FAMILIES = (CpuFamily.AVX512_VNNI, CpuFamily.ARM64)


def inexact_dot_refusal(artifact: str, family: str) -> str | None:
    """Why a full-range int8 artifact may not run on `family` whatever a receipt says, or None."""
    if family in {f.value for f in EXACT_DOT_FAMILIES}:
        return None
    return (f"cpu_family_inexact: {artifact} uses full-range int8 weights, exact only where dot "
            f"products accumulate in 32 bits ({', '.join(f.value for f in EXACT_DOT_FAMILIES)});"
            f" this CPU is {family}: use onnx-int8")


def machine_class() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def device_class(device: str) -> str:
    """The hardware class a receipt names, e.g. `cpu-x86_64`, `cuda-x86_64`, `mps-arm64`."""
    return f"{device}-{machine_class()}"


def _cpu_flags() -> set[str]:
    """Feature flags from /proc/cpuinfo (Linux) or sysctl (macOS); empty when unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags") or line.startswith("Features"):
                return set(line.split(":", 1)[1].lower().split())
    if sys.platform == "darwin":
        import subprocess  # here only: importing it costs a Linux router's cold start ~6 ms

        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features",
                                  "machdep.cpu.leaf7_features"], capture_output=True, text=True,
                                 timeout=5, check=False).stdout
        except OSError:
            return set()
        return {f.lower().replace(".", "_") for f in out.split()}
    return set()


def detect_cpu_family(machine: str | None = None, flags: set[str] | None = None) -> CpuFamily:
    """The family of this machine, or the one `INTAKEGATE_CPU_FAMILY` declares (arguments exist
    so the flag mapping can be tested)."""
    declared = os.environ.get(FAMILY_ENV)
    if declared and machine is None and flags is None:
        try:
            return CpuFamily(declared)
        except ValueError:
            raise ValueError(f"{FAMILY_ENV}={declared!r} is not one of "
                             f"{[f.value for f in CpuFamily]}") from None
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64", "armv8", "armv8l"):
        return CpuFamily.ARM64
    flags = _cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return CpuFamily.AVX512_VNNI
    if "avx2" in flags:
        return CpuFamily.AVX2
    if not flags:
        # Unknown flags (e.g. Windows): no receipt names an unknown family as validated, and
        # AVX2 is the family most x86 desktops report.
        return CpuFamily.AVX2
    return CpuFamily.X86_NO_AVX2


def cpu_gate_key(family: str) -> str:
    """The `gates` key of a quantized artifact's receipt computed on one CPU family."""
    return f"{CPU_GATE_PREFIX}{family}"


def gate_cpu_family(gated_with: str | None) -> str | None:
    """The CPU family a `gates` key names (`onnxruntime-cpu-arm64` -> `arm64`), or None for a
    receipt that holds across families (fp32, Core ML, torch)."""
    if gated_with and gated_with.startswith(CPU_GATE_PREFIX):
        return gated_with[len(CPU_GATE_PREFIX):]
    return None
