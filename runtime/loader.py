"""Turn a bundle directory into one immutable, checked serving engine, or refuse with a reason.

The order follows the reliability plan: verify every file, then bind the requested artifact to
its own receipt, check the tokenizer against the input policy, load model and tokenizer from the
very bytes that were hashed, probe the vocabulary, and run the golden self-test. Anything that
fails raises `LoadRefused(reason, detail)`; the router turns that into fail-closed mode. Only
caller mistakes (an unknown artifact name, a device that is not there, a missing extra) raise
other errors, because those are startup errors the user must fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.bundle.paths import GOLDEN, MANIFEST
from intakegate.bundle import Artifact, BundleError, Status, VerifiedBundle, verify_bundle
from intakegate.encoding import InputPolicy, Windows, prepare_text, tokenizer_matches_policy
from intakegate.errors import InputError
from intakegate.gate import Run, release_decision, run_from_json, spec_from_json
from intakegate.hardware import detect_cpu_family, device_class, gated_cpu_families
from intakegate.jsonio import loads_strict
from intakegate.lexical import LexicalFormatError, ScoreBlend, blend_from_manifest
from intakegate.routing import Reason
from intakegate.runtime.decision import Device
from intakegate.segments import SegmenterUnavailable, check_segmenter
from intakegate.ticket_score import ScoreSpec, score_ticket
from intakegate.signing import bind_statement, read_statement
from intakegate.tokenizer_pins import check_tokenizer
from intakegate.vocab import GateDecision

log = logging.getLogger(__name__)
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "int8": 5e-3}
MAX_TOLERANCE = 0.05
PICKLE_MAGIC = tuple(bytes([0x80, proto]) for proto in range(2, 6))
ZIP_MAGIC = b"PK\x03\x04"
ONNX_ARTIFACTS = {Artifact.ONNX_FP32.value, Artifact.ONNX_INT8.value}


class HeldNotes:
    """Where a measurement-only load records the refusals it let through.

    The default load raises `LoadRefused(artifact_held)` at the first of them; a load with
    `allow_held=True` (only `intakegate bench` asks for it, to time held artifacts) notes each
    one instead, and the router then labels every decision with them and never admits a ticket.
    """

    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.notes: list[str] = []

    def held(self, detail: str) -> None:
        """Refuse (default) or, in measurement-only mode, remember why this would be refused."""
        if not self.allow:
            raise LoadRefused(Reason.ARTIFACT_HELD, detail)
        self.notes.append(detail)


class LoadRefused(Exception):
    """The bundle or artifact cannot serve; `reason` is what every ticket will carry."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True)
class Engine:
    """Everything one route needs, published once and never changed (swap, don't mutate)."""

    verified: VerifiedBundle
    artifact: str
    device: str
    providers: tuple[str, ...]
    spec: ScoreSpec
    threshold: float
    tokenizer_json: str
    backend: Any
    selftest: str
    threads: int
    # Measurement-only loads (`allow_held=True`): why the artifact would have been refused.
    # Empty for every serving load; when set, the router sends every ticket to a person.
    held: tuple[str, ...] = ()
    # The tokenizer the load checked and self-tested with; the loading thread routes with it
    # (tokenizers are per thread), so the first route does not build a second one.
    load_tokenizer: Any = None
    # What the publisher signed (intakegate.signing.Statement); None when no key is trusted.
    signature: Any = None

    @property
    def bundle_version(self) -> str:
        return self.verified.bundle_version

    @property
    def manifest_sha256(self) -> str:
        return self.verified.manifest_sha256


def integrity_reason(exc: BundleError, artifact_path: str | None = None) -> LoadRefused:
    """Map a bundle error to the product vocabulary, keeping its code as the sub-code."""
    if exc.code == "model_unavailable":
        return LoadRefused(Reason.MODEL_UNAVAILABLE, str(exc))
    if exc.code == "artifact_held":
        return LoadRefused(Reason.ARTIFACT_HELD, str(exc))
    if (exc.code == "bundle_missing_file" and artifact_path and exc.path
            and (exc.path == artifact_path or exc.path.startswith(artifact_path + "/"))):
        return LoadRefused(Reason.MODEL_UNAVAILABLE, f"model_missing: {exc}")
    return LoadRefused(Reason.BUNDLE_INTEGRITY, str(exc))


def resolve_source(source: str | Path, bundles_root: str | Path) -> tuple[Path, str | None]:
    """A bundle directory, or a dataset name through its ACTIVE pointer (with the pinned digest).

    A directory holding a manifest wins; then a dataset with an ACTIVE pointer; then any other
    directory (which will fail verification with its own reason).
    """
    path = Path(source)
    if (path / MANIFEST).exists():
        return path, None
    pointer = active_pointer(source, bundles_root)
    if pointer is not None:
        return pointer.bundle_dir, pointer.manifest_sha256
    if path.is_dir():
        return path, None
    raise LoadRefused(Reason.MODEL_UNAVAILABLE,
                      f"bundle_not_found: {source!s} is neither a bundle directory nor a dataset "
                      f"with an active bundle under {bundles_root}")


def active_pointer(source: str | Path, bundles_root: str | Path) -> Any:
    """The dataset's ACTIVE pointer, checked like `bundles activate` (intakegate.bundle.registry):
    a plain version name inside the dataset's folder and a manifest digest, or LoadRefused."""
    from intakegate.bundle.registry import NAME, read_active

    if not NAME.fullmatch(str(source)):
        return None  # not a dataset name: a path, verified (and refused) as a directory
    try:
        return read_active(bundles_root, str(source))
    except BundleError as exc:
        if exc.code == "pointer_invalid":
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, str(exc)) from None
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"bundle_not_found: {exc}") from None
    except (OSError, ValueError) as exc:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"bundle_not_found: {exc}") from None


def validated_devices(art: Mapping[str, Any], on_device: bool = False) -> set[str] | None:
    """Devices this artifact's receipt covers on this machine; None when it does not say.

    `device_classes` entries are a device (`cpu`, `cuda`, `mps`: gated on that device class)
    or a device on one machine type (`cpu-x86_64`, `mps-arm64`), which is stricter. With
    `on_device` (verify-on-device) a CPU family outside the receipt stays a candidate: the
    load then computes the receipt here before admitting anything.
    """
    classes = art.get("device_classes")
    if classes is None:
        return None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, "manifest_invalid: device_classes must be a "
                                                   "list of strings")
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


def cpu_family_refusal(art: Mapping[str, Any], artifact: str = "the artifact") -> str | None:
    """Why a quantized artifact may not run on this CPU family, or None when a receipt in its
    `gates` map was computed on this family (int8 kernels differ per family)."""
    if not is_quantized(art):
        return None
    here = this_cpu_family()
    gated = gated_cpu_families(art.get("gates"))
    if here in gated:
        return None
    return (f"hw_not_validated: this CPU is {here}; {artifact} was gated on CPU families "
            f"{gated or 'none'}; run `intakegate gate BUNDLE --artifact {artifact} --record` on "
            f"this machine, or load a pack made --with-fixtures with --verify-on-device")


def is_quantized(art: Mapping[str, Any]) -> bool:
    """int8 or fp16 artifacts drift by hardware: they must name the hardware they were gated on."""
    return str(art.get("precision", "")).lower() not in ("fp32", "")


# ---------------------------------------------------------------------------------------------
# Checks on the verified manifest


def artifact_digest(verified: VerifiedBundle, rel: str) -> str:
    """The digest train/export record for an artifact path, from the verified file table."""
    files = {e["path"]: e["sha256"] for e in verified.manifest["files"]}
    if rel in files:
        return files[rel]
    if f"{rel}/model.safetensors" in files:  # the torch-fp32 directory: its weights file
        return files[f"{rel}/model.safetensors"]
    import hashlib

    digest = hashlib.sha256()
    members = sorted((p[len(rel) + 1:], s) for p, s in files.items() if p.startswith(rel + "/"))
    if not members:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"model_missing: nothing at {rel}")
    for sub, sha in members:
        digest.update(f"{sub}\0{sha}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Bound:
    """An artifact entry together with its own, re-gated receipt run."""

    art: Mapping[str, Any]
    run: Run


def check_artifact(verified: VerifiedBundle, artifact: str, held: HeldNotes | None = None
                   ) -> Bound:
    """The artifact exists, is eligible, and its receipt is its own (bound to its digest).

    `held` (measurement-only loads) lets a held bundle or artifact through with a note; the
    digest binding and the receipt's integrity are checked either way.
    """
    held = held or HeldNotes(False)
    manifest = verified.manifest
    if manifest["decision"] != GateDecision.ELIGIBLE_FOR_SHADOW.value:
        held.held(f"bundle_held: {manifest['decision_reason']}")
    artifacts = manifest["artifacts"]
    if artifact not in artifacts:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE,
                          f"artifact_missing: bundle has no {artifact} (has: "
                          f"{', '.join(sorted(artifacts)) or 'none'}); run `intakegate export` "
                          f"or pass --artifact")
    art = artifacts[artifact]
    if art["status"] != Status.ELIGIBLE.value:
        held.held(f"artifact_held: {artifact} is {art['status']} ({art.get('reason')})")
    digest = artifact_digest(verified, art["path"])
    if art["sha256"] != digest or art.get("model_sha256") != digest:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"receipt_mismatch: {artifact} receipt names model "
                          f"{str(art.get('model_sha256'))[:12]}, artifact is {digest[:12]}")
    run_rel = art.get("receipt_run")
    if not isinstance(run_rel, str):
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {artifact} has no "
                                                   f"receipt run")
    shared = sorted(n for n, a in artifacts.items() if n != artifact and a.get("receipt_run")
                    == run_rel)
    if shared:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {artifact} reuses the "
                                                   f"receipt run of {shared[0]}")
    run = check_receipt(verified, artifact, run_rel, held)
    return Bound(art, run)


def check_receipt(verified: VerifiedBundle, artifact: str, run_rel: str,
                  held: HeldNotes | None = None) -> Run:
    """The artifact's own run re-gates to eligible against the bundle's frozen receipt.

    Both files are parsed from the verified bytes, never re-read from disk.
    """
    manifest = verified.manifest
    try:
        spec = spec_from_json(loads_strict(verified.read(manifest["receipt"]).decode("utf-8")))
        run = run_from_json(loads_strict(verified.read(run_rel).decode("utf-8")))
    except BundleError as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {exc}") from None
    except (InputError, UnicodeDecodeError) as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {run_rel}: {exc}"
                          ) from None
    if run.bundle_version != manifest["bundle_version"]:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {run_rel} is a run of "
                                                   f"{run.bundle_version}")
    if run.threshold != float(manifest["threshold"]):
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"receipt_mismatch: {run_rel} threshold "
                                                   f"{run.threshold} != manifest")
    result = release_decision(spec, run)
    if not result.eligible:
        (held or HeldNotes(False)).held(f"artifact_held: {artifact} receipt re-gates to "
                                        f"{result.reason}")
    return run


def check_no_pickle(verified: VerifiedBundle) -> None:
    """No file in the bundle may be a pickle or a torch.save zip, whatever its name."""
    for entry in verified.manifest["files"]:
        path = verified.root / entry["path"]
        with path.open("rb") as handle:
            head = handle.read(4)
        if head[:2] in PICKLE_MAGIC or head == ZIP_MAGIC:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"format_not_allowed: {entry['path']} is a pickle or zip archive")


def read_tokenizer(verified: VerifiedBundle, policy: InputPolicy) -> tuple[str, Any, int | None]:
    """tokenizer.json from the verified bytes, checked against the input policy."""
    from tokenizers import Tokenizer

    rel = verified.manifest["tokenizer"]
    text = verified.read(rel).decode("utf-8")
    try:
        mismatch = tokenizer_matches_policy(text, policy) or check_tokenizer(
            text, verified.manifest.get("tokenizer_pins"))
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # noqa: BLE001 - any unreadable tokenizer refuses the bundle
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"tokenizer_unreadable: {type(exc).__name__}") from None
    if mismatch:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"policy_mismatch: {mismatch}")
    unk = json.loads(text).get("model", {}).get("unk_token")
    unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else None
    return text, tokenizer, unk_id


# ---------------------------------------------------------------------------------------------
# Backends


def _build_onnx(verified: VerifiedBundle, artifact: str, art: Mapping[str, Any], device: str,
                threads: int | None, validated: set[str] | None) -> Any:
    from intakegate.runtime.onnx_backend import (PROVIDER_FOR_DEVICE, DeviceUnavailable,
                                                 OnnxLogits)
    from intakegate.runtime.onnx_check import NotOnnx, external_tensors

    model = verified.read(art["path"])
    try:
        if external_tensors(model):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"onnx_external_data: {art['path']} "
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
    candidates = [d for d in ("cuda", "mps", "cpu") if PROVIDER_FOR_DEVICE[d] in available
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


def _build_torch(verified: VerifiedBundle, art: Mapping[str, Any], device: str,
                 threads: int | None) -> Any:
    prefix = art["path"] + "/"
    # Before torch or transformers is imported: only the JSON configs are read for this check.
    refuse_code({e["path"][len(prefix):]: verified.read(e["path"])
                 if e["path"].endswith(".json") else b""
                 for e in verified.manifest["files"] if e["path"].startswith(prefix)})
    try:
        import torch  # noqa: F401 - imported only for the torch artifact
    except ImportError:
        from intakegate.errors import MissingExtraError

        raise MissingExtraError("train", "torch") from None
    from intakegate.runtime.onnx_backend import DeviceUnavailable
    from intakegate.runtime.torch_backend import (TorchLogits, load_torch_model_from_files,
                                                  pick_device)

    try:
        dev = pick_device(device)
    except RuntimeError as exc:
        raise DeviceUnavailable(str(exc)) from None
    if threads:
        torch.set_num_threads(threads)
    prefix = art["path"] + "/"
    files = {e["path"][len(prefix):]: verified.read(e["path"])
             for e in verified.manifest["files"] if e["path"].startswith(prefix)}
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


def build_backend(verified: VerifiedBundle, artifact: str, art: Mapping[str, Any], device: str,
                  threads: int | None, held: HeldNotes | None = None,
                  on_device: bool = False) -> Any:
    """The backend for the artifact on the requested (and validated) device.

    A measurement-only load (`held.allow`) notes an explicit device outside the receipt instead
    of refusing it; `auto` picks among validated devices either way. `on_device`: a CPU family
    outside the receipt is allowed here because the caller verifies the receipt on it.
    """
    held = held or HeldNotes(False)
    validated = validated_devices(art, on_device)
    if validated is None and is_quantized(art):
        held.held(f"hw_not_validated: {artifact} names no device_classes in its receipt")
    if device != Device.AUTO.value:
        require_device(artifact, device)  # a device that is not there is a startup error
    if device != Device.AUTO.value and validated is not None and device not in validated:
        family = cpu_family_refusal(art, artifact) if device == Device.CPU.value else None
        held.held(family or f"hw_not_validated: {device_class(device)} is not in {artifact}'s "
                            f"receipt {art.get('device_classes')}")
    if artifact in ONNX_ARTIFACTS:
        return _build_onnx(verified, artifact, art, device, threads, validated)
    if artifact == Artifact.TORCH_FP32.value:
        if device == Device.AUTO.value and validated is not None:
            device = next((d for d in ("cuda", "mps", "cpu") if d in validated), "cpu")
        return _build_torch(verified, art, device, threads)
    raise LoadRefused(Reason.MODEL_UNAVAILABLE,
                      f"artifact_unsupported: {artifact} is run by the macOS client through "
                      f"Core ML, not by this router")


# ---------------------------------------------------------------------------------------------
# Load-time probes


def read_blend(verified: VerifiedBundle) -> ScoreBlend | None:
    """The bundle's score blend from its verified bytes; a malformed one refuses the bundle."""
    try:
        return blend_from_manifest(verified.manifest, verified.read)
    except (LexicalFormatError, ValueError, UnicodeDecodeError) as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"manifest_invalid: {exc}") from None


def check_policy_segmenter(policy: InputPolicy) -> None:
    """Refuse a bundle whose segmenter (that exact version) is not installed here: another
    version may cut sentences differently from the cuts the receipt pinned."""
    if policy.segmentation is None:  # the manifest schema requires it; never score whole-only
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, "manifest_invalid: input_policy.segmentation")
    try:
        check_segmenter(policy.segmentation)
    except SegmenterUnavailable as exc:
        raise LoadRefused(Reason.MODEL_UNAVAILABLE, f"segmenter_unavailable: {exc}") from None


def read_logit_range(verified: VerifiedBundle) -> Any:
    """The logit range recorded at gate time (intakegate.logit_range); malformed refuses."""
    from intakegate.logit_range import range_from_manifest

    try:
        return range_from_manifest(verified.manifest)
    except ValueError as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"manifest_invalid: {exc}") from None


def probe_vocabulary(backend: Any, tokenizer: Any, spec: ScoreSpec) -> None:
    """Run the highest token id once: a tokenizer larger than the model's embedding is refused
    here, instead of failing (or reading out of bounds) on some later ticket."""
    ids = list(tokenizer.encode("ok").ids) or [0]
    ids = [*ids[:1], spec.vocab_size - 1, *ids[1:]]
    arr = np.asarray([ids], dtype=np.int64)
    windows = Windows(arr, np.ones_like(arr), np.zeros_like(arr), np.zeros(1, dtype=np.int64),
                      (1,))
    try:
        out = np.asarray(backend.logits(windows), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - the probe failing refuses the bundle
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"token_id_out_of_range: the tokenizer's {spec.vocab_size} ids do not "
                          f"fit the model ({type(exc).__name__})") from None
    if out.shape != (1, spec.n_labels) or not np.isfinite(out).all():
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"score_out_of_range: probe output {list(out.shape)} is not "
                          f"finite [1, {spec.n_labels}]")


def golden_self_test(verified: VerifiedBundle, artifact: str, bound: Bound, backend: Any,
                     tokenizer: Any, spec: ScoreSpec) -> str:
    """Score the artifact's golden rows and refuse a drift beyond tolerance.

    `receipt/golden.json` (written by train/export) holds, per artifact, the model digest it
    belongs to, a tolerance, and K rows `{fixture_id, text, score}` whose scores are that
    artifact's own receipt scores. Absent file or block: the self-test is skipped (logged).
    """
    listed = {e["path"] for e in verified.manifest["files"]}
    if GOLDEN not in listed:
        return "absent"
    try:
        doc = json.loads(verified.read(GOLDEN).decode("utf-8"))
        block = doc["artifacts"].get(artifact)
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: {GOLDEN} unreadable ({exc})") from None
    if block is None:
        return "absent"
    art = bound.art
    if not isinstance(block, dict) or block.get("model_sha256") != art["model_sha256"]:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: golden rows of {artifact} belong to another model")
    precision = str(art.get("precision", "fp32")).lower()
    default_tol = next((t for p, t in DEFAULT_TOLERANCE.items() if precision.startswith(p)),
                       1e-4)
    tolerance = block.get("tolerance", default_tol)
    tolerance = float(tolerance) if isinstance(tolerance, (int, float)) else -1.0
    rows = block.get("rows")
    if not (0 < tolerance <= MAX_TOLERANCE) or not isinstance(rows, list) or not rows:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: {GOLDEN} needs rows and a tolerance in "
                          f"(0, {MAX_TOLERANCE}]")
    receipt_scores = {r.fixture_id: r.score for r in bound.run.rows}
    texts, expected = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"selftest_mismatch: rows[{i}] is not "
                                                       f"an object")
        fid, text, score = row.get("fixture_id"), row.get("text"), row.get("score")
        if not isinstance(text, str) or not isinstance(score, (int, float)):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"selftest_mismatch: rows[{i}] needs "
                                                       f"text and score")
        own = receipt_scores.get(fid) if fid is not None else None
        if fid is not None and (own is None or abs(own - float(score)) > 1e-9):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"selftest_mismatch: rows[{i}] ({fid}) is not the receipt's score")
        prepared = prepare_text(text, spec.policy)
        if prepared.text is None:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"selftest_mismatch: rows[{i}] refused by the input policy")
        texts.append(prepared.text)
        expected.append(float(score))
    scored = [score_ticket(backend.logits, tokenizer, t, spec) for t in texts]
    drift = 0.0
    for i, (got, want) in enumerate(zip(scored, expected)):
        if got.score is None:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"selftest_mismatch: rows[{i}] gave no score ({got.detail})")
        drift = max(drift, abs(got.score - want))
    if drift > tolerance:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: max |score drift| {drift:.3g} > {tolerance:.3g} "
                          f"over {len(texts)} golden rows")
    return f"passed: {len(texts)} rows, max drift {drift:.2g} <= {tolerance:.2g}"


def declared_artifact_path(bundle_dir: Path, artifact: str) -> str | None:
    """Where the (not yet verified) manifest says the artifact is; only used to tell a missing
    model (`model_unavailable`) from another missing file (`bundle_integrity`)."""
    try:
        raw = json.loads((Path(bundle_dir) / MANIFEST).read_bytes()[:8 << 20])
        path = raw["artifacts"][artifact]["path"]
    except Exception:  # noqa: BLE001 - unknown: the integrity reason applies
        return None
    return path if isinstance(path, str) else None


def load_engine(bundle_dir: Path, artifact: str, device: str, threads: int | None,
                pinned_manifest_sha256: str | None = None, require_selftest: bool = False,
                allow_held: bool = False, trust: Any = None, verify_on_device: bool = False,
                cache_dir: Path | None = None) -> Engine:
    """Verify, bind, load from the hashed bytes, probe and self-test; or raise LoadRefused.

    `allow_held=True` is for measuring speed only (`intakegate bench`): a held bundle or
    artifact, or a device outside its receipt, loads with `Engine.held` naming why, and the
    router then sends every ticket to a person. Integrity checks are never relaxed.
    `verify_on_device=True`: on a CPU family no receipt covers, run the full receipt here
    (runtime/device_receipt.py, cached under `cache_dir`) and serve only if it passes.
    """
    held = HeldNotes(allow_held)
    art_path = declared_artifact_path(bundle_dir, artifact)
    try:
        # Signature first (intakegate.signing), when trusted keys are configured.
        statement = read_statement(bundle_dir, trust) if trust is not None else None
        verified = verify_bundle(bundle_dir)
        if statement is not None:
            bind_statement(statement, verified)
        if pinned_manifest_sha256 and verified.manifest_sha256 != pinned_manifest_sha256:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              "pointer_mismatch: the bundle changed since it was activated")
        bound = check_artifact(verified, artifact, held)
        check_no_pickle(verified)
        try:
            policy = InputPolicy.from_json(verified.manifest["input_policy"])
        except (TypeError, ValueError) as exc:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"manifest_invalid: input_policy: {exc}") from None
        tokenizer_json, tokenizer, unk_id = read_tokenizer(verified, policy)
        head = verified.manifest["score_head"]
        labels, positive = head.get("labels"), head.get("positive")
        if (not isinstance(labels, list) or not isinstance(positive, list) or not positive
                or not all(isinstance(p, int) and 0 <= p < len(labels) for p in positive)):
            raise LoadRefused(Reason.BUNDLE_INTEGRITY, "manifest_invalid: score_head")
        check_policy_segmenter(policy)
        spec = ScoreSpec(policy, tuple(positive), len(labels),
                         tokenizer.get_vocab_size(with_added_tokens=True), unk_id,
                         read_blend(verified), read_logit_range(verified))
        backend = build_backend(verified, artifact, bound.art, device, threads, held,
                                verify_on_device)
        probe_vocabulary(backend, tokenizer, spec)
        if (verify_on_device and str(backend.device) == Device.CPU.value
                and cpu_family_refusal(bound.art) is not None):
            from intakegate.runtime.device_receipt import verify_here

            log.info("%s", verify_here(verified, artifact, bound.art, bound.run, backend.logits,
                                       tokenizer, spec, this_cpu_family(), cache_dir,
                                       LoadRefused))
        selftest = golden_self_test(verified, artifact, bound, backend, tokenizer, spec)
    except BundleError as exc:
        raise integrity_reason(exc, art_path) from None
    if selftest == "absent":  # required for this bundle format (`require_selftest` is moot)
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"selftest_mismatch: no golden rows for {artifact} in {GOLDEN}; "
                          f"re-run train/export to write them")
    dev = backend.device
    used = dev if isinstance(dev, str) else str(dev.type)
    if held.notes:
        log.warning("MEASUREMENT-ONLY load of %s/%s: %s; every ticket goes to human_review_now "
                    "(artifact_held)", verified.bundle_version, artifact, "; ".join(held.notes))
    return Engine(verified, artifact, used, tuple(backend.providers), spec,
                  verified.threshold, tokenizer_json, backend, selftest,
                  int(getattr(backend, "threads", None) or threads or 0), tuple(held.notes),
                  tokenizer, statement)
