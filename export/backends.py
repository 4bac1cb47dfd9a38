"""The gate's backends: each artifact is scored by the runtime that executes it, loaded from
verified bytes.

`gate_backend(artifact, bundle, workers)` is the one hook. It returns a callable (Windows ->
logits) that also says what it ran on and how many tickets it may score at once, or raises
`BackendUnavailable` with the reason the artifact cannot be gated on this machine.

Core ML artifacts are gated by Core ML itself on macOS (`coreml-macos-...`). Elsewhere they are
gated by the numpy reference executor of the package's ML Program (`mil-reference-numpy`,
`intakegate.export.mil_reference`): the same receipt, computed from the package's own weights,
but not by Apple's runtime, which stays the final word on the target device. Without coremltools
(needed to parse the package) they stay pending.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import platform
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.bundle import Artifact, BundleError, VerifiedBundle
from intakegate.export.artifacts import SPECS, Engine
from intakegate.export.materialize import materialize
from intakegate.parallel import cpu_workers
from intakegate.scoring.encoding import Windows

COREML_NEEDS_MACOS = "coreml_predictions_need_macos"
COREML_NO_TOOLS = "coremltools_not_installed"
MIL_UNSUPPORTED_OP = "mil_reference_unsupported_op"
COREML_COMPUTE_UNITS = "ALL"  # what a desktop client gets by default
COREML_MAX_BATCH = 64


class BackendUnavailable(NotImplementedError):
    """This machine cannot execute the artifact, so cannot gate it; `reason` is gate-line text,
    `extra` the pip extra whose absence is the cause (reported as `not_checked`, not `held`)."""

    def __init__(self, reason: str, message: str, extra: str | None = None) -> None:
        self.reason = reason
        self.extra = extra
        super().__init__(f"{reason}: {message}")


@dataclass
class GateBackend:
    """A logits callable plus what it ran on; `close()` removes any materialized files.

    `workers`: tickets the re-gate scores at once (`score_texts`); 1 where the runtime is not
    known to be safe to call from several threads, or gains nothing from it (torch: its own
    threads already fill the cores)."""

    logits: Callable[[Windows], np.ndarray]
    gated_with: str
    details: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    _cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __call__(self, windows: Windows) -> np.ndarray:
        return self.logits(windows)

    def close(self) -> None:
        self._cleanup.close()

    def __enter__(self) -> GateBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def artifact_path(bundle: VerifiedBundle, artifact: Artifact) -> str:
    """The artifact's path as the manifest records it."""
    entry = bundle.manifest.artifacts.get(artifact.value)
    if entry is None:
        raise BundleError("artifact_missing", f"{artifact.value} is not in the manifest's "
                                              "artifacts; run `intakegate export` first")
    return entry.path


def gate_backend(artifact: Artifact, bundle: VerifiedBundle, workers: int | None = None
                 ) -> GateBackend:
    """The backend that executes `artifact`, loaded from the bundle's verified bytes, for
    `workers` tickets at once (default: one per core where its runtime allows it)."""
    engine = SPECS[artifact].engine
    path = artifact_path(bundle, artifact)
    wanted = cpu_workers() if workers is None else max(1, workers)
    if engine is Engine.ONNXRUNTIME:
        return onnx_backend(bundle.read(path), SPECS[artifact].precision != "fp32", wanted)
    if engine is Engine.TORCH:
        return _torch_backend(bundle, path)
    return _coreml_backend(bundle, path, wanted)


def onnx_backend(model_bytes: bytes, quantized: bool, workers: int = 1) -> GateBackend:
    """Side by side, each ticket's `Run` takes one thread: a few short rows split across
    threads wait on each other, so tickets side by side re-gate faster than one ticket on all
    threads, with the same scores to the bit (measured: lab/README.md, regate_threads)."""
    from intakegate.hardware import cpu_gate_key, detect_cpu_family, device_class
    from intakegate.runtime.onnx_backend import OnnxLogits

    logits = OnnxLogits(model_bytes, device="cpu", threads=1 if workers > 1 else None)
    family = detect_cpu_family().value
    # int8 kernels differ per CPU family, so each family's receipt is its own `gates` entry.
    gated_with = cpu_gate_key(family) if quantized else "onnxruntime-cpu"
    return GateBackend(logits, gated_with, {
        "providers": logits.providers, "threads": logits.threads, "machine": logits.platform,
        "cpu_family": family, "device_class": device_class("cpu")}, workers=workers)


def _torch_backend(bundle: VerifiedBundle, path: str) -> GateBackend:
    try:
        from intakegate.runtime.torch_backend import TorchLogits, load_torch_model_from_files
    except ImportError as exc:
        raise BackendUnavailable("torch_not_installed", f"{exc}; install it with: pip install "
                                                        "'intakegate[train]'", "train") from None
    model = load_torch_model_from_files(bundle.read_tree(path))
    return GateBackend(TorchLogits(model, "cpu"), "torch-cpu", {"machine": platform.machine()})


def _coreml_backend(bundle: VerifiedBundle, path: str, workers: int = 1) -> GateBackend:
    if sys.platform != "darwin":
        return _mil_reference_backend(bundle, path, workers)
    tmp = tempfile.TemporaryDirectory(prefix="intakegate-coreml-")
    try:
        package = materialize(bundle, path, Path(tmp.name))
        logits = CoreMLLogits(package)
    except BaseException:
        tmp.cleanup()
        raise
    backend = GateBackend(logits, f"coreml-macos-{COREML_COMPUTE_UNITS.lower()}",
                          {"compute_units": COREML_COMPUTE_UNITS, "machine": platform.machine(),
                           "macos": platform.mac_ver()[0]})
    backend._cleanup.callback(tmp.cleanup)
    return backend


class CoreMLLogits:
    """Callable: Windows -> logits through Core ML itself (macOS only), in int32 batches."""

    def __init__(self, package: Path) -> None:
        try:
            import coremltools as ct
        except ImportError as exc:
            raise BackendUnavailable("coremltools_not_installed", f"{exc}; install it with: pip "
                                     "install 'intakegate[export]'", "export") from None

        self.model = ct.models.MLModel(str(package),
                                       compute_units=getattr(ct.ComputeUnit,
                                                             COREML_COMPUTE_UNITS))
        self.input_names = [i.name for i in self.model.get_spec().description.input]

    def __call__(self, w: Windows) -> np.ndarray:
        out = []
        for start in range(0, len(w.input_ids), COREML_MAX_BATCH):
            feed = {name: np.ascontiguousarray(
                getattr(w, name)[start:start + COREML_MAX_BATCH], dtype=np.int32)
                for name in self.input_names}
            out.append(np.asarray(self.model.predict(feed)["logits"], dtype=np.float32))
        return np.concatenate(out, axis=0)


def _mil_reference_backend(bundle: VerifiedBundle, path: str, workers: int = 1
                           ) -> GateBackend:
    """Off macOS: the package's ML Program evaluated by the numpy reference executor.

    The package is materialized from verified bytes, loaded (weights and all) and removed again
    before anything is scored.
    """
    from intakegate.export.mil_reference import (
        ARITHMETIC,
        MIL_REFERENCE,
        UnsupportedOpError,
        one_blas_thread,
    )

    if importlib.util.find_spec("coremltools") is None:
        raise BackendUnavailable(COREML_NO_TOOLS,
                                 f"Core ML predictions need macOS, and the reference executor on "
                                 f"{sys.platform} needs coremltools to read the package; install "
                                 "it with: pip install 'intakegate[export]'", "export")
    with tempfile.TemporaryDirectory(prefix="intakegate-mil-") as tmp:
        package = materialize(bundle, path, Path(tmp))
        try:
            logits = MilReferenceLogits(package, source=path)
        except UnsupportedOpError as exc:
            raise BackendUnavailable(f"{MIL_UNSUPPORTED_OP}:{exc.op_type}", str(exc)) from exc
    ex = logits.executor
    backend = GateBackend(logits, MIL_REFERENCE, {
        "executor": MIL_REFERENCE, "arithmetic": ARITHMETIC, "opset": ex.opset,
        "ops_per_call": ex.compute_ops, "op_types": sorted(ex.op_counts),
        "coremltools": _version("coremltools"), "numpy": np.__version__,
        "machine": platform.machine(), "system": platform.system(),
        "final_word": "Apple's Core ML runtime on the target device"}, workers=workers)
    # One BLAS thread per ticket for as long as the backend lives: BLAS limits are process-wide,
    # so per-run limits entered and left by concurrent tickets would undo each other.
    backend._cleanup.enter_context(one_blas_thread())
    return backend


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class MilReferenceLogits:
    """Callable: Windows -> logits from the reference executor, fed as Core ML is fed: int32
    inputs, at most COREML_MAX_BATCH windows a call, shapes inside the package's flexible ranges
    (a window Core ML would refuse is refused here too)."""

    def __init__(self, package: Path, source: str | None = None) -> None:
        from intakegate.export.mil_reference import MilReference, input_ranges, load_program

        program, spec = load_program(package)
        self.source = source or str(package)
        self.executor = MilReference(program, source=self.source)
        self.ranges = input_ranges(spec)
        names = self.executor.output_names
        self.output = "logits" if "logits" in names else names[0]

    def _feed(self, w: Windows, start: int) -> dict[str, np.ndarray]:
        from intakegate.export.mil_reference import MilProgramError

        feed = {}
        for name in self.executor.input_names:
            if not hasattr(w, name):
                raise MilProgramError(f"{self.source}: the program takes {name!r}, which the "
                                      "tokenizer windows do not carry")
            arr = np.asarray(getattr(w, name)[start:start + COREML_MAX_BATCH])
            bounds = self.ranges.get(name, [])
            if len(bounds) != arr.ndim or any(not lo <= n <= hi
                                               for n, (lo, hi) in zip(arr.shape, bounds)):
                raise MilProgramError(f"{self.source}: {name} of shape {arr.shape} is outside "
                                      f"the package's input ranges {bounds}")
            if arr.size and (arr.min() < np.iinfo(np.int32).min
                             or arr.max() > np.iinfo(np.int32).max):
                raise MilProgramError(f"{self.source}: {name} does not fit int32")
            feed[name] = np.ascontiguousarray(arr, dtype=np.int32)
        return feed

    def __call__(self, w: Windows) -> np.ndarray:
        out = []
        for start in range(0, len(w.input_ids), COREML_MAX_BATCH):
            result = self.executor.run(self._feed(w, start))[self.output]
            out.append(np.asarray(result, dtype=np.float32))
        return np.concatenate(out, axis=0)
