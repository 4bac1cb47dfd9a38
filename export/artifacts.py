"""What each exportable artifact is: its format, precision, place in the bundle and gate runtime.

One frozen description per artifact, so the paths and labels written into the manifest, read by
the re-gate and printed by the CLI come from a single table instead of strings in every module.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from intakegate.bundle import Artifact
from intakegate.bundle.paths import run_path
from intakegate.errors import InputError

MODEL_ROOT = "model"
DOCS_DIR = "docs"


class Engine(str, Enum):
    """The runtime family that executes an artifact (and so must gate it)."""

    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    COREML = "coreml"


@dataclass(frozen=True)
class ArtifactSpec:
    """Where an artifact lives in the bundle and what it is."""

    artifact: Artifact
    format: str
    precision: str
    path: str
    engine: Engine

    @property
    def name(self) -> str:
        return self.artifact.value

    @property
    def receipt_run(self) -> str:
        return run_path(self.name)

    @property
    def drift_report(self) -> str:
        return f"{DOCS_DIR}/drift_{self.name}.json"


SPECS: dict[Artifact, ArtifactSpec] = {
    Artifact.TORCH_FP32: ArtifactSpec(Artifact.TORCH_FP32, "safetensors", "fp32",
                                      f"{MODEL_ROOT}/torch-fp32", Engine.TORCH),
    Artifact.ONNX_FP32: ArtifactSpec(Artifact.ONNX_FP32, "onnx", "fp32",
                                     f"{MODEL_ROOT}/onnx-fp32/model.onnx", Engine.ONNXRUNTIME),
    Artifact.ONNX_INT8: ArtifactSpec(Artifact.ONNX_INT8, "onnx", "int8-dynamic",
                                     f"{MODEL_ROOT}/onnx-int8/model.onnx", Engine.ONNXRUNTIME),
    Artifact.ONNX_INT8_VNNI: ArtifactSpec(Artifact.ONNX_INT8_VNNI, "onnx",
                                          "int8-dynamic-full-range",
                                          f"{MODEL_ROOT}/onnx-int8-vnni/model.onnx",
                                          Engine.ONNXRUNTIME),
    Artifact.COREML_FP16: ArtifactSpec(Artifact.COREML_FP16, "mlpackage", "fp16",
                                       f"{MODEL_ROOT}/coreml-fp16/model.mlpackage", Engine.COREML),
    Artifact.COREML_INT8: ArtifactSpec(Artifact.COREML_INT8, "mlpackage", "int8-weights-fp16",
                                       f"{MODEL_ROOT}/coreml-int8/model.mlpackage", Engine.COREML),
}
EXPORTABLE: tuple[Artifact, ...] = (Artifact.ONNX_FP32, Artifact.ONNX_INT8, Artifact.ONNX_INT8_VNNI,
                                    Artifact.COREML_FP16, Artifact.COREML_INT8)
ONNX_ARTIFACTS = frozenset({Artifact.ONNX_FP32, Artifact.ONNX_INT8, Artifact.ONNX_INT8_VNNI})
COREML_ARTIFACTS = frozenset({Artifact.COREML_FP16, Artifact.COREML_INT8})


def parse_artifacts(names: Iterable[str], allowed: Iterable[Artifact] = tuple(Artifact)
                    ) -> list[Artifact]:
    """Artifact names from the CLI (repeated or comma-separated), in table order, no duplicates."""
    allowed = tuple(allowed)
    wanted: set[Artifact] = set()
    for chunk in names:
        for name in (n.strip() for n in chunk.split(",")):
            if not name:
                continue
            try:
                art = Artifact(name)
            except ValueError:
                raise InputError(f"unknown artifact {name!r}; choose from "
                                 f"{[a.value for a in allowed]}", field="artifacts") from None
            if art not in allowed:
                raise InputError(f"artifact {name!r} cannot be used here; choose from "
                                 f"{[a.value for a in allowed]}", field="artifacts")
            wanted.add(art)
    return [a for a in allowed if a in wanted]


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of the tools that produced or gated an artifact."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
