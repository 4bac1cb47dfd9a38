"""Backend construction: the artifact's model on a device its receipt covers.

Why: a receipt holds for the devices (and, for quantized artifacts, the CPU families) it was
computed on. One device preference order (`DEVICE_PREFERENCE`) serves `auto` for every artifact
kind; an explicit device that is not there is a startup error, and one outside the receipt is
refused (or noted, for a measurement-only load).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from intakegate.bundle import Artifact, ArtifactEntry, VerifiedBundle
from intakegate.hardware import detect_cpu_family, device_class
from intakegate.routing import Reason
from intakegate.runtime.decision import Device
from intakegate.runtime.refusal import HeldNotes, LoadRefused

log = logging.getLogger(__name__)
ONNX_ARTIFACTS = {Artifact.ONNX_FP32.value, Artifact.ONNX_INT8.value,
                  Artifact.ONNX_INT8_VNNI.value}
# What `auto` tries, best first, for every artifact kind (restricted to validated devices).
DEVICE_PREFERENCE = (Device.CUDA.value, Device.MPS.value, Device.CPU.value)


def validated_devices(art: ArtifactEntry, on_device: bool = False) -> set[str] | None:
    """Devices this artifact's receipt covers on this machine; None when it does not say.

    `device_classes` entries are a device (`cpu`, `cuda`, `mps`: gated on that device class)
    or a device on one machine type (`cpu-x86_64`, `mps-arm64`), which is stricter. With
    `on_device` (verify-on-device) a CPU family outside the receipt stays a candidate: the
    load then computes the receipt here before admitting anything.
    """
    classes = art.device_classes
    if classes is None:
        return None
    devices = {d.value for d in Device if d is not Device.AUTO
               and (d.value in classes or device_class(d.value) in classes)}
    if not on_device and cpu_family_refusal(art) is not None:
        devices.discard(Device.CPU.value)
    return devices


def this_cpu_family() -> str:
    """This machine's CPU family (intakegate.hardware); `unknown` is never a gated one."""
    try:
        return detect_cpu_family().value
    except (OSError, ValueError) as exc:
        log.warning("CPU family unknown: %s", exc)
        return "unknown"


def cpu_family_refusal(art: ArtifactEntry, artifact: str = "the artifact") -> str | None:
    """Why a quantized artifact may not run on this CPU family, or None when a receipt in its
    `gates` map was computed on this family (int8 kernels differ per family)."""
    if not art.quantized:
        return None
    here = this_cpu_family()
    gated = art.gated_cpu_families()
    if here in gated:
        return None
    return (f"hw_not_validated: this CPU is {here}; {artifact} was gated on CPU families "
            f"{gated or 'none'}; run `intakegate gate BUNDLE --artifact {artifact} --record` on "
            f"this machine, or load a pack made --with-fixtures with --verify-on-device")


def _build_onnx(verified: VerifiedBundle, artifact: str, art: ArtifactEntry, device: str,
                threads: int | None, validated: set[str] | None) -> Any:
    from intakegate.runtime.onnx_backend import PROVIDER_FOR_DEVICE, DeviceUnavailable, OnnxLogits
    from intakegate.runtime.onnx_check import NotOnnx, external_tensors

    model = verified.read(art.path)
    try:
        if external_tensors(model):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"onnx_external_data: {art.path} "
                                                       f"references tensors outside the file")
    except NotOnnx as exc:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"model_unloadable: {exc}") from None
    if device != Device.AUTO.value:
        try:
            return OnnxLogits(model, device, threads)
        except DeviceUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - an unloadable model fails closed
            raise LoadRefused(Reason.MODEL_UNAVAILABLE,
                              f"model_unloadable: {type(exc).__name__}: {str(exc)[:200]}"
                              ) from None
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    candidates = [d for d in DEVICE_PREFERENCE if PROVIDER_FOR_DEVICE[d] in available
                  and (validated is None or d in validated)]
    errors = []
    for dev in candidates:
        try:
            backend = OnnxLogits(model, dev, threads)
        except Exception as exc:  # noqa: BLE001 - auto tries the next device
            log.warning("auto: %s did not start (%s); trying the next device", dev, exc)
            errors.append(f"{dev}: {type(exc).__name__}")
            continue
        log.info("auto picked %s (%s)", backend.device, backend.providers)
        return backend
    raise LoadRefused(Reason.MODEL_UNAVAILABLE if errors else Reason.ARTIFACT_HELD,
                      f"model_unloadable: {'; '.join(errors)}" if errors else
                      cpu_family_refusal(art, artifact) or
                      "hw_not_validated: no available device is in the artifact's receipt")


def refuse_code(files: Mapping[str, bytes]) -> None:
    """The torch artifact's config is checked before transformers (or torch) sees it."""
    from intakegate.runtime.model_files import CodeInBundle, check_torch_files

    try:
        check_torch_files(files)
    except CodeInBundle as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"format_not_allowed: {exc}") from None


def _build_torch(verified: VerifiedBundle, art: ArtifactEntry, device: str,
                 threads: int | None) -> Any:
    prefix = art.path + "/"
    # Before torch or transformers is imported: only the JSON configs are read for this check.
    refuse_code({e.path[len(prefix):]: verified.read(e.path) if e.path.endswith(".json") else b""
                 for e in verified.manifest.files if e.path.startswith(prefix)})
    try:
        import torch  # noqa: F401 - imported only for the torch artifact
    except ImportError:
        from intakegate.errors import MissingExtraError

        raise MissingExtraError("train", "torch") from None
    from intakegate.runtime.onnx_backend import DeviceUnavailable
    from intakegate.runtime.torch_backend import (
        TorchLogits,
        load_torch_model_from_files,
        pick_device,
    )

    try:
        dev = pick_device(device)
    except RuntimeError as exc:
        raise DeviceUnavailable(str(exc)) from None
    if threads:
        torch.set_num_threads(threads)
    files = verified.read_tree(art.path)
    try:
        model = load_torch_model_from_files(files)
    except ImportError as exc:
        from intakegate.errors import MissingExtraError

        raise MissingExtraError("train", exc.name or "transformers") from None
    except Exception as exc:  # noqa: BLE001 - an unloadable model fails closed
        raise LoadRefused(Reason.MODEL_UNAVAILABLE,
                          f"model_unloadable: {type(exc).__name__}: {str(exc)[:200]}") from None
    backend = TorchLogits(model, dev.type)
    backend.threads = torch.get_num_threads()
    return backend


def require_device(artifact: str, device: str) -> None:
    """Raise DeviceUnavailable, naming what is missing, for an explicit device not present."""
    if artifact in ONNX_ARTIFACTS:
        import onnxruntime as ort

        from intakegate.runtime.onnx_backend import pick_provider

        pick_provider(device, list(ort.get_available_providers()))
    elif artifact == Artifact.TORCH_FP32.value:
        try:
            import torch  # noqa: F401 - imported only for the torch artifact
        except ImportError:
            from intakegate.errors import MissingExtraError

            raise MissingExtraError("train", "torch") from None
        from intakegate.runtime.onnx_backend import DeviceUnavailable
        from intakegate.runtime.torch_backend import pick_device

        try:
            pick_device(device)
        except RuntimeError as exc:
            raise DeviceUnavailable(str(exc)) from None


def build_backend(verified: VerifiedBundle, artifact: str, art: ArtifactEntry, device: str,
                  threads: int | None, held: HeldNotes | None = None,
                  on_device: bool = False) -> Any:
    """The backend for the artifact on the requested (and validated) device.

    A measurement-only load (`held.allow`) notes an explicit device outside the receipt instead
    of refusing it; `auto` picks among validated devices either way. `on_device`: a CPU family
    outside the receipt is allowed here because the caller verifies the receipt on it.
    """
    held = held or HeldNotes(False)
    validated = validated_devices(art, on_device)
    if validated is None and art.quantized:
        held.held(f"hw_not_validated: {artifact} names no device_classes in its receipt")
    if device != Device.AUTO.value:
        require_device(artifact, device)  # a device that is not there is a startup error
    if device != Device.AUTO.value and validated is not None and device not in validated:
        family = cpu_family_refusal(art, artifact) if device == Device.CPU.value else None
        held.held(family or f"hw_not_validated: {device_class(device)} is not in {artifact}'s "
                            f"receipt {list(art.device_classes or ())}")
    if artifact in ONNX_ARTIFACTS:
        return _build_onnx(verified, artifact, art, device, threads, validated)
    if artifact == Artifact.TORCH_FP32.value:
        if device == Device.AUTO.value and validated is not None:
            device = next((d for d in DEVICE_PREFERENCE if d in validated), Device.CPU.value)
        return _build_torch(verified, art, device, threads)
    raise LoadRefused(Reason.MODEL_UNAVAILABLE,
                      f"artifact_unsupported: {artifact} is run by the macOS client through "
                      f"Core ML, not by this router")
