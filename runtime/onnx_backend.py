"""The onnxruntime backend: one session per artifact, built from the verified bytes.

Providers are requested only when onnxruntime reports them available, and after the session is
built the providers it really uses are compared with the request: a GPU that silently did not
load is a startup error, not a slow CPU run.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from intakegate.scoring.encoding import Windows

PROVIDER_FOR_DEVICE = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "mps": "CoreMLExecutionProvider",
}


class DeviceUnavailable(RuntimeError):
    """An explicitly requested device is not there; the message names what is missing."""


def default_threads() -> int:
    """A desktop app shares the machine: use at most 4 threads, at least 1."""
    return max(1, min(4, os.cpu_count() or 1))


def pick_provider(device: str, available: list[str]) -> tuple[str, str]:
    """(device actually used, provider) for a requested device."""
    if device == "auto":
        for dev in ("cuda", "mps"):
            if PROVIDER_FOR_DEVICE[dev] in available:
                return dev, PROVIDER_FOR_DEVICE[dev]
        return "cpu", PROVIDER_FOR_DEVICE["cpu"]
    if device not in PROVIDER_FOR_DEVICE:
        raise DeviceUnavailable(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    provider = PROVIDER_FOR_DEVICE[device]
    if provider not in available:
        hint = {"cuda": "install onnxruntime-gpu with a matching CUDA runtime",
                "mps": "run on macOS with an onnxruntime build that has CoreML",
                "cpu": "reinstall onnxruntime"}[device]
        raise DeviceUnavailable(f"device {device!r} needs {provider}, which this onnxruntime "
                                f"does not offer (available: {available}); {hint}")
    return device, provider


class OnnxLogits:
    """Callable: Windows -> logits, feeding only the inputs the graph declares."""

    def __init__(self, model_bytes: bytes, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
        self.device, provider = pick_provider(device, available)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers: list[Any] = [provider]
        if provider != "CPUExecutionProvider":
            # Refuse a partial silent fallback to CPU for an explicitly accelerated session.
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        self.session = ort.InferenceSession(model_bytes, sess_options=options,
                                            providers=providers)
        self.providers = list(self.session.get_providers())
        if provider not in self.providers:
            raise DeviceUnavailable(f"requested {provider} but the session runs on "
                                    f"{self.providers}")
        self.input_names = [i.name for i in self.session.get_inputs()]
        known = {"input_ids", "attention_mask", "token_type_ids"}
        unknown = [n for n in self.input_names if n not in known]
        if unknown:
            raise ValueError(f"the ONNX graph declares inputs we cannot feed: {unknown}")
        self.threads = options.intra_op_num_threads
        self.platform = platform.machine()

    def logits(self, w: Windows) -> np.ndarray:
        """The graph's first output for the windows (the router checks shape and values)."""
        feed = {name: getattr(w, name) for name in self.input_names}
        return np.asarray(self.session.run(None, feed)[0])

    def __call__(self, w: Windows) -> np.ndarray:
        return self.logits(w)
