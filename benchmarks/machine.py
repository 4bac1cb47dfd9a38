"""What the numbers were measured on: a timing without its machine cannot be compared or rerun."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("intakegate", "onnxruntime", "numpy", "tokenizers", "torch", "transformers",
             "scikit-learn", "matplotlib", "optimum", "optimum-onnx")


def slug(text: str) -> str:
    """A lowercase file-name-safe form: `AMD EPYC 7B13` -> `amd-epyc-7b13`."""
    cleaned = re.sub(r"\((r|tm|c)\)", "", text.lower())
    cleaned = re.sub(r"\b(cpu|processor|with radeon graphics)\b", "", cleaned)
    out = re.sub(r"[^a-z0-9]+", "-", cleaned).strip("-")
    return re.sub(r"-+", "-", out) or "unknown"


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, macOS sysctl), else platform's guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=5, check=True)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    """Physical cores where the OS says (Linux: distinct core ids per package)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    cores: set[tuple[str, str]] = set()
    package = core = ""
    for line in cpuinfo.read_text(errors="replace").splitlines() + [""]:
        if line.startswith("physical id"):
            package = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
        elif not line.strip():
            if core:
                cores.add((package, core))
            package = core = ""
    return len(cores) or None


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, from nvidia-smi (no torch import)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return names[0] if names else None


def device_name(device: str) -> str:
    """The results folder name: `cpu-<cpu-model>-<family>-<n>cores` (the int8 kernel family,
    because a VM's model name often hides it: `cpu-amd-epyc-avx2-2cores`), `cuda-<gpu>`,
    `mps-<chip>`."""
    if device == "cuda":
        return f"cuda-{slug(gpu_name() or 'gpu')}"
    if device == "mps":
        return f"mps-{slug(cpu_model())}"
    return f"cpu-{slug(cpu_model())}-{slug(cpu_family())}-{os.cpu_count() or 0}cores"


def cpu_family() -> str:
    """The int8 kernel family of this CPU (avx512_vnni, avx2, arm64, x86_no_avx2), from the
    detector export gates int8 artifacts by; `unknown` when it cannot tell."""
    from intakegate.hardware import detect_cpu_family

    try:
        return detect_cpu_family().value
    except (OSError, ValueError):
        return "unknown"


def library_versions() -> dict[str, str | None]:
    """Installed versions (from package metadata, so torch is not imported to ask)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float] | None:
    """1/5/15-minute load (Unix): a busy machine makes every number here slower."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe(device: str, threads: int) -> dict[str, Any]:
    """The machine block of results.json."""
    return {
        "device": device,
        "device_name": device_name(device),
        "gpu": gpu_name() if device == "cuda" else None,
        "cpu_model": cpu_model(),
        "cpu_family": cpu_family(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "threads_requested": threads,
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libraries": library_versions(),
        "load_average_before": load_average(),
    }
