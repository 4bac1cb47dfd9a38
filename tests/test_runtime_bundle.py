"""Runtime: bundle integrity and load-time refusals (RELIABILITY B01-B09, B12-B19, M01, M02,
M09-M11), activation by name, rollback, crash safety and hot swap.

A refused bundle puts the router in fail-closed mode: it stays up, says so once, and every
ticket (however routine) goes to `human_review_now` with the refusal's reason.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from intakegate.bundle import activate, parse_pointer, rollback, sha256_bytes, verify_bundle
from intakegate.routing import Reason
from intakegate.runtime import LiveRouter, Router
from intakegate.runtime.onnx_backend import DeviceUnavailable
from intakegate.runtime.onnx_check import NotOnnx, external_tensors
from intakegate.vocab import Route
from tests.runtime_helpers import (
    cached_onnx_bundle,
    copy_bundle,
    manifest,
    repin,
    rewrite,
    write_raw_manifest,
)

HR = Route.HUMAN_REVIEW_NOW
ROUTINE = "Where is my package?"
DATASET = "refund-intake"


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


@pytest.fixture(scope="session")
def other_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second eligible bundle with its own tokenizer, model bytes and threshold."""
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-perm",
                              permute=True)


@pytest.fixture()
def copy(onnx_bundle: Path, tmp_path: Path) -> Path:
    return copy_bundle(onnx_bundle, tmp_path, "copy")


def refused(bundle: Path, reason: Reason, sub: str = "", artifact: str = "onnx-fp32",
            **kw: Any) -> Router:
    """Load, and check that the router is fail-closed with `reason` for every ticket."""
    router = Router.load(bundle, artifact=artifact, **kw)
    assert not router.ready
    health = router.health()
    assert health["reason"] == reason.value and sub in health["detail"], health
    for d in [router.route(ROUTINE), *router.route_batch([ROUTINE, "hello"])]:
        assert d.route is HR and d.reason is reason and d.score is None, d
        assert d.bundle_version is None and d.manifest_sha256 is None
        assert sub in d.detail
    return router


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_good_copy_loads(copy: Path) -> None:
    router = Router.load(copy, artifact="onnx-fp32")
    assert router.ready and router.route(ROUTINE).route is Route.GUARDED_AGENT


# ---------------------------------------------------------------------------------------------
# Files: tampered, extra, missing, renamed, special (B01-B05, B08, B12, B15, B16)


@pytest.mark.parametrize("rel", ["tokenizer.json", "model/onnx-fp32/model.onnx",
                                 "model/torch-fp32/model.safetensors", "receipt/golden.json",
                                 "receipt/runs/onnx-fp32.json", "receipt/spec.json",
                                 "docs/label_guide.md", "split_manifest.json"])
def test_one_flipped_byte_anywhere_refuses_the_bundle(copy: Path, rel: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """B01: the file is named; the failure is logged loudly once, not per ticket."""
    flip_byte(copy / rel)
    refused(copy, Reason.BUNDLE_INTEGRITY, f"bundle_tampered: sha256 differs from the "
                                           f"manifest ({rel})")
    assert caplog.text.count("ROUTER FAIL-CLOSED") == 1


@pytest.mark.parametrize("rel", ["evil.onnx", "docs/.DS_Store", "model/onnx-fp32/extra.onnx"])
def test_an_unlisted_file_refuses_the_bundle(copy: Path, rel: str) -> None:
    (copy / rel).write_bytes(b"\x08\x07")  # B02
    refused(copy, Reason.BUNDLE_INTEGRITY, f"bundle_unlisted_file: file not listed in the "
                                           f"manifest ({rel})")


def test_a_missing_listed_file_refuses_the_bundle(copy: Path) -> None:
    (copy / "docs" / "data_card.md").unlink()  # B03
    refused(copy, Reason.BUNDLE_INTEGRITY, "bundle_missing_file")


def test_a_renamed_file_refuses_the_bundle(copy: Path) -> None:
    (copy / "docs" / "data_card.md").rename(copy / "docs" / "data_card.txt")  # B04
    refused(copy, Reason.BUNDLE_INTEGRITY, "data_card")


@pytest.mark.parametrize("kind", ["symlink-inside", "symlink-outside", "fifo", "hardlink"])
def test_special_files_refuse_the_bundle(copy: Path, tmp_path: Path, kind: str) -> None:
    """B05: symlinks (even pointing inside), FIFOs and hard links are refused (lstat walk)."""
    target = copy / "docs" / "special"
    if kind == "symlink-inside":
        target.symlink_to(copy / "docs" / "label_guide.md")
    elif kind == "symlink-outside":
        (copy / "tokenizer.json").unlink()
        (copy / "tokenizer.json").symlink_to(tmp_path / "elsewhere.json")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        os.link(copy / "docs" / "label_guide.md", target)
    refused(copy, Reason.BUNDLE_INTEGRITY, "bundle_special_file")


def test_git_lfs_pointer_is_refused_by_size_before_hashing(copy: Path) -> None:
    """B08."""
    (copy / "model/onnx-fp32/model.onnx").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 9\n")
    refused(copy, Reason.BUNDLE_INTEGRITY, "bundle_size_mismatch")
    with pytest.raises(NotOnnx):
        external_tensors((copy / "model/onnx-fp32/model.onnx").read_bytes())


def test_tokenizer_from_another_bundle_is_refused(copy: Path, other_bundle: Path) -> None:
    """B12: each file valid on its own; the manifest binds them, so the mix is tampering."""
    assert Router.load(other_bundle, artifact="onnx-fp32").ready
    (copy / "tokenizer.json").write_bytes((other_bundle / "tokenizer.json").read_bytes())
    refused(copy, Reason.BUNDLE_INTEGRITY, "tokenizer.json")


def test_whole_mlpackage_tree_is_hashed(copy: Path) -> None:
    """B15: a byte changed inside an .mlpackage (or its Manifest.json) refuses the bundle."""
    pkg = copy / "model/coreml-fp16/model.mlpackage"
    (pkg / "Data/com.apple.CoreML/weights").mkdir(parents=True)
    (pkg / "Manifest.json").write_text('{"fileFormatVersion": "1.0.0"}')
    (pkg / "Data/com.apple.CoreML/weights/weight.bin").write_bytes(bytes(range(256)) * 4)
    rewrite(copy, lambda m: None)
    assert Router.load(copy, artifact="onnx-fp32").ready
    flip_byte(pkg / "Data/com.apple.CoreML/weights/weight.bin")
    refused(copy, Reason.BUNDLE_INTEGRITY, "weight.bin")
    (pkg / "Data/com.apple.CoreML/weights/weight.bin").write_bytes(bytes(range(256)) * 4)
    (pkg / "Manifest.json").write_text('{"fileFormatVersion": "1.0.1"}')
    refused(copy, Reason.BUNDLE_INTEGRITY, "Manifest.json")


def test_pickle_capable_files_are_refused(copy: Path) -> None:
    """B16: a listed .pt is refused by name; a pickle or torch zip under an allowed name is
    refused by its magic bytes."""
    evil = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00N."
    (copy / "evil.pt").write_bytes(evil)
    m = manifest(copy)
    m["files"].append({"path": "evil.pt", "size": len(evil), "sha256": sha256_bytes(evil)})
    write_raw_manifest(copy, m)
    refused(copy, Reason.BUNDLE_INTEGRITY, "format_not_allowed")
    for name, data in (("weights.bin", evil), ("archive.bin", b"PK\x03\x04rest")):
        fresh = copy.parent / f"fresh-{name}"
        copy_bundle(copy, copy.parent, fresh.name)
        (fresh / "evil.pt").unlink()
        (fresh / "docs" / name).write_bytes(data)
        rewrite(fresh, lambda m: None)
        refused(fresh, Reason.BUNDLE_INTEGRITY, "format_not_allowed")


# ---------------------------------------------------------------------------------------------
# The manifest (B06, B09, B13, B14) and the ONNX file (B07)


@pytest.mark.parametrize("bad", ["../x", "/abs/x", "a\\b", "C:x", "NUL", "docs/nul.txt", "",
                                 "a\x00b", "docs/../x", "docs//x"])
def test_manifest_paths_that_leave_the_bundle_are_refused(copy: Path, bad: str) -> None:
    """B06."""
    m = manifest(copy)
    m["files"].append({"path": bad, "size": 1, "sha256": "0" * 64})
    write_raw_manifest(copy, m)
    refused(copy, Reason.BUNDLE_INTEGRITY, "manifest_bad_path")


def _raw(copy: Path) -> str:
    return (copy / "manifest.json").read_text()


@pytest.mark.parametrize("mutation", ["duplicate", "trailing", "nan", "threshold", "fallback",
                                      "unknown", "not-json", "format"])
def test_malformed_manifests_are_refused(copy: Path, mutation: str) -> None:
    """B09: strict parser; every deviation refuses the bundle."""
    text = _raw(copy)
    m = json.loads(text)
    if mutation == "duplicate":
        text = text.replace('{\n', '{\n  "threshold": 0.01,\n', 1)
    elif mutation == "trailing":
        text += "{}"
    elif mutation == "nan":
        text = text.replace(f'"threshold": {json.dumps(m["threshold"])}', '"threshold": NaN')
    elif mutation == "not-json":
        text = text[: len(text) // 2]
    else:
        key, value = {"threshold": ("threshold", 1.5),
                      "fallback": ("fallback_route", "guarded_agent"),
                      "unknown": ("route_override", "guarded_agent"),
                      "format": ("format_version", 99)}[mutation]
        m[key] = value
        text = json.dumps(m)
    write_raw_manifest(copy, text)
    refused(copy, Reason.BUNDLE_INTEGRITY, "manifest_invalid")


@pytest.mark.parametrize("change", ["window", "stride", "padding"])
def test_tokenizer_that_does_not_follow_the_input_policy_is_refused(copy: Path,
                                                                     change: str) -> None:
    """B13: a consistent bundle whose tokenizer.json truncates or pads differently."""
    tok = json.loads((copy / "tokenizer.json").read_text())
    if change == "window":
        tok["truncation"]["max_length"] = 512
    elif change == "stride":
        tok["truncation"]["stride"] = 0
    else:
        tok["padding"] = {"strategy": {"Fixed": 256}, "direction": "Right", "pad_to_multiple_of":
                          None, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    rewrite(copy, lambda m: None)
    refused(copy, Reason.BUNDLE_INTEGRITY, "policy_mismatch")


def test_int8_never_inherits_the_fp32_receipt(copy: Path) -> None:
    """B14: each artifact's receipt is bound to its own digest and its own run."""
    fp32 = manifest(copy)["artifacts"]["onnx-fp32"]

    def same_digest(m: dict[str, Any]) -> None:
        m["artifacts"]["onnx-int8"]["model_sha256"] = fp32["model_sha256"]

    rewrite(copy, same_digest)
    refused(copy, Reason.BUNDLE_INTEGRITY, "receipt_mismatch", artifact="onnx-int8")
    assert Router.load(copy, artifact="onnx-fp32").ready  # fp32 itself is fine

    def same_run(m: dict[str, Any]) -> None:
        art = m["artifacts"]["onnx-int8"]
        art["model_sha256"] = art["sha256"]
        art["receipt_run"] = fp32["receipt_run"]

    rewrite(copy, same_run)
    refused(copy, Reason.BUNDLE_INTEGRITY, "reuses the receipt run of onnx-fp32",
            artifact="onnx-int8")

    def same_family_run(m: dict[str, Any]) -> None:  # the run the router binds on this family
        art = m["artifacts"]["onnx-int8"]
        art["receipt_run"] = "receipt/runs/onnx-int8.json"
        for gate in art["gates"].values():
            gate["receipt_run"] = fp32["receipt_run"]

    rewrite(copy, same_family_run)
    refused(copy, Reason.BUNDLE_INTEGRITY, "reuses the receipt run of onnx-fp32",
            artifact="onnx-int8")


def test_an_artifact_whose_run_does_not_regate_is_held(copy: Path) -> None:
    """The manifest says eligible, but the artifact's own run misses a required positive."""
    run_path = copy / "receipt/runs/onnx-int8.json"
    run = json.loads(run_path.read_text())
    required = set(json.loads((copy / "receipt/spec.json").read_text())["required_slices"])
    row = next(r for r in run["rows"] if r["gold"] == 1 and r["slice"] in required)
    row["score"] = run["threshold"] / 2
    run_path.write_text(json.dumps(run))
    rewrite(copy, lambda m: None)
    refused(copy, Reason.ARTIFACT_HELD, "receipt re-gates to missed", artifact="onnx-int8")


def test_onnx_with_external_data_is_refused(copy: Path) -> None:
    """B07: tensors outside the hashed model file are refused before a session is built."""
    import onnx

    rel = "model/onnx-fp32/model.onnx"
    model = onnx.load_from_string((copy / rel).read_bytes())
    assert external_tensors((copy / rel).read_bytes()) == 0
    onnx.save_model(model, str(copy / rel), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    data = (copy / rel).read_bytes()
    assert external_tensors(data) > 0

    def bind(m: dict[str, Any]) -> None:
        m["artifacts"]["onnx-fp32"].update(sha256=sha256_bytes(data),
                                           model_sha256=sha256_bytes(data))

    rewrite(copy, bind)
    refused(copy, Reason.BUNDLE_INTEGRITY, "onnx_external_data")


def test_vocabulary_larger_than_the_model_is_refused_at_load(copy: Path) -> None:
    """I25 at load: a tokenizer with ids beyond the embedding rows fails the vocabulary probe."""
    tok = json.loads((copy / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    for i in range(50):
        vocab[f"zzextra{i}"] = len(vocab)
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    rewrite(copy, lambda m: repin(copy, m))  # pinned too: the probe, not the pins, refuses
    refused(copy, Reason.BUNDLE_INTEGRITY, "token_id_out_of_range")


# ---------------------------------------------------------------------------------------------
# Model and artifact availability (M01, M02, M09, M10), gate status, self-test (M11)


def test_missing_model_file_is_model_unavailable(copy: Path) -> None:
    """M01: the process stays up and the health check says not ready."""
    (copy / "model/onnx-fp32/model.onnx").unlink()
    router = refused(copy, Reason.MODEL_UNAVAILABLE, "model_missing")
    assert router.health()["ready"] is False
    assert Router.load(copy / "nope", artifact="onnx-fp32").health()["reason"] == \
        "model_unavailable"


def test_missing_artifact_names_what_the_bundle_has(tiny_bundle: Path) -> None:
    refused(tiny_bundle, Reason.MODEL_UNAVAILABLE, "bundle has no onnx-int8 (has: torch-fp32)",
            artifact="onnx-int8")


@pytest.mark.parametrize("what", ["artifact", "bundle"])
def test_held_artifacts_and_bundles_are_not_served(copy: Path, what: str) -> None:
    def hold(m: dict[str, Any]) -> None:
        if what == "artifact":
            m["artifacts"]["onnx-fp32"]["status"] = "hold"
        else:
            m["decision"], m["decision_reason"] = "hold", "missed:ato-1"

    rewrite(copy, hold)
    refused(copy, Reason.ARTIFACT_HELD, "held")


def test_session_constructor_failure(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """M02: the ctor raising gives model_unavailable; a live router keeps the verified bundle
    serving when a reload fails."""
    import onnxruntime as ort

    live = LiveRouter(copy, artifact="onnx-fp32")
    version = live.health()["bundle_version"]

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("ORT: cannot create session")

    monkeypatch.setattr(ort, "InferenceSession", broken)
    router = refused(copy, Reason.MODEL_UNAVAILABLE, "model_unloadable")
    assert "RuntimeError" in router.health()["detail"]
    assert live.reload() is False
    assert live.health()["ready"] and live.health()["bundle_version"] == version
    assert live.route(ROUTINE).route is Route.GUARDED_AGENT


def _fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime that lists CUDA but whose sessions silently run on CPU only."""
    import onnxruntime as ort

    real = ort.InferenceSession

    class CpuOnly:
        def __init__(self, model: bytes, sess_options: Any = None, providers: Any = None) -> None:
            self._s = real(model, providers=["CPUExecutionProvider"])

        def __getattr__(self, name: str) -> Any:
            return getattr(self._s, name)

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", CpuOnly)


def test_requested_accelerator_that_silently_runs_on_cpu(copy: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """M09: an explicit device the session did not really get is a startup error naming it;
    `auto` falls back to the next validated device and reports it."""
    rewrite(copy, lambda m: m["artifacts"]["onnx-fp32"].update(device_classes=["cpu", "cuda"]))
    _fake_cuda(monkeypatch)
    with pytest.raises(DeviceUnavailable, match="CUDAExecutionProvider"):
        Router.load(copy, artifact="onnx-fp32", device="cuda")
    router = Router.load(copy, artifact="onnx-fp32", device="auto")
    assert router.ready and router.device == "cpu"
    assert router.route(ROUTINE).providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize("case", ["other-device", "no-device-classes", "other-cpu-family"])
def test_int8_on_hardware_outside_its_receipt_is_held(copy: Path, case: str) -> None:
    """M10."""
    def change(m: dict[str, Any]) -> None:
        art = m["artifacts"]["onnx-int8"]
        if case == "other-device":
            art["device_classes"] = ["cuda"]
        elif case == "no-device-classes":
            art.pop("device_classes")
        else:
            art["gates"] = {"onnxruntime-cpu-some_other_family": {
                "decision": "eligible_for_shadow", "reason": "exact_receipt_pass"}}

    rewrite(copy, change)
    for device in ("cpu", "auto"):
        refused(copy, Reason.ARTIFACT_HELD, "hw_not_validated", artifact="onnx-int8",
                device=device)


def test_int8_on_a_cpu_family_not_in_its_receipt_says_which_and_what_to_run(
        copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The family found, the families gated and the command to run; declared through the
    environment (INTAKEGATE_CPU_FAMILY), no internals patched."""
    from intakegate.hardware import detect_cpu_family

    gated = detect_cpu_family().value
    other = next(f for f in ("avx2", "avx512_vnni", "arm64") if f != gated)
    monkeypatch.setenv("INTAKEGATE_CPU_FAMILY", other)
    for device in ("cpu", "auto"):
        router = Router.load(copy, artifact="onnx-int8", device=device)
        assert not router.ready
        detail = router.route(ROUTINE).detail or ""
        assert f"this CPU is {other}" in detail and f"['{gated}']" in detail
        assert "intakegate gate BUNDLE --artifact onnx-int8 --record" in detail
    monkeypatch.setenv("INTAKEGATE_CPU_FAMILY", gated)
    assert Router.load(copy, artifact="onnx-int8", device="cpu").ready


@pytest.mark.parametrize("case", ["score-edited", "drift", "other-model", "required"])
def test_golden_self_test(copy: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    """M11: drift beyond tolerance from the receipt refuses the bundle at load."""
    golden_path = copy / "receipt/golden.json"
    golden = json.loads(golden_path.read_text())
    block = golden["artifacts"]["onnx-fp32"]
    kwargs: dict[str, Any] = {}
    if case == "score-edited":
        block["rows"][0]["score"] += 0.01
        sub = "is not the receipt's score"
    elif case == "drift":
        for row in block["rows"]:
            row.pop("fixture_id")
            row["score"] = min(1.0, row["score"] + 0.01)
        sub = "max |score drift|"
    elif case == "other-model":
        block["model_sha256"] = golden["artifacts"]["onnx-int8"]["model_sha256"]
        sub = "belong to another model"
    else:  # B24: golden rows are required for this bundle format, asked for or not
        del golden["artifacts"]["onnx-fp32"]
        sub = "no golden rows"
    golden_path.write_text(json.dumps(golden))
    rewrite(copy, lambda m: None)
    router = refused(copy, Reason.BUNDLE_INTEGRITY, sub, **kwargs)
    assert router.health()["detail"].startswith("selftest_mismatch: ")
    if case == "required":
        refused(copy, Reason.BUNDLE_INTEGRITY, sub, require_selftest=False)
        (copy / "receipt/golden.json").unlink()  # the whole file removed, manifest rewritten
        rewrite(copy, lambda m: None)
        refused(copy, Reason.BUNDLE_INTEGRITY, "no golden rows")


# ---------------------------------------------------------------------------------------------
# Activation by name, rollback, crash safety, disk full, hot swap (B17-B19, F4, F5)


def _root_with(tmp_path: Path, bundles: dict[str, Path]) -> Path:
    root = tmp_path / "bundles"
    for name, src in bundles.items():
        copy_bundle(src, root / DATASET, name)
    return root


def test_router_by_dataset_name_follows_active_and_rollback(tmp_path: Path, onnx_bundle: Path,
                                                            other_bundle: Path) -> None:
    """After `bundles rollback`, a newly loaded router uses the earlier bundle's threshold,
    tokenizer and fallback: the whole contract, not the weights alone."""
    root = _root_with(tmp_path, {"v1": onnx_bundle, "v2": other_bundle})
    activate(root, DATASET, "v1")
    activate(root, DATASET, "v2")
    v2 = Router.load(DATASET, artifact="onnx-fp32", bundles_root=root)
    assert v2.ready and v2.bundle_dir == root / DATASET / "v2"
    assert v2.threshold == manifest(other_bundle)["threshold"]
    rollback(root, DATASET)
    v1 = Router.load(DATASET, artifact="onnx-fp32", bundles_root=root)
    assert v1.bundle_dir == root / DATASET / "v1"
    assert v1.threshold == manifest(onnx_bundle)["threshold"] != v2.threshold
    assert v1.engine.tokenizer_json == (onnx_bundle / "tokenizer.json").read_text()  # type: ignore[union-attr]
    assert v1.engine.verified.manifest.fallback_route == "human_review_now"  # type: ignore[union-attr]
    assert v1.route(ROUTINE).bundle_version == manifest(onnx_bundle)["bundle_version"]


def test_pointer_faults_fail_closed(tmp_path: Path, onnx_bundle: Path) -> None:
    """F5: a truncated pointer, or one whose digest no longer matches the bundle."""
    root = _root_with(tmp_path, {"v1": onnx_bundle})
    activate(root, DATASET, "v1")
    pointer = root / DATASET / "ACTIVE"
    good = pointer.read_text()
    pointer.write_text(good.replace(json.loads(good)["manifest_sha256"], "0" * 64))
    refused(Path(DATASET), Reason.BUNDLE_INTEGRITY, "pointer_mismatch", bundles_root=root)
    pointer.write_bytes(b"")
    refused(Path(DATASET), Reason.MODEL_UNAVAILABLE, "bundle_not_found", bundles_root=root)


def test_read_only_bundle_directory_serves(tmp_path: Path, onnx_bundle: Path) -> None:
    """F4: the router never writes into a bundle."""
    ro = copy_bundle(onnx_bundle, tmp_path, "ro")
    for path in [ro, *ro.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        assert Router.load(ro, artifact="onnx-fp32").ready
    finally:
        for path in [ro, *ro.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


SWAPPER = """
import sys
from intakegate.bundle import activate, rollback
root, dataset = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while True:
    activate(root, dataset, "a")
    activate(root, dataset, "b")
    rollback(root, dataset)
"""


def test_sigkill_during_activation_leaves_old_or_new(tmp_path: Path, onnx_bundle: Path) -> None:
    """B17/F2: kill a process that activates and rolls back in a loop at random points; the
    pointer always names a whole verified bundle with its exact digest (30 trials here)."""
    root = _root_with(tmp_path, {"a": onnx_bundle, "b": onnx_bundle})
    rewrite(root / DATASET / "b", lambda m: m.update(notes=["copy b"]))
    digests = {v: verify_bundle(root / DATASET / v).manifest_sha256 for v in ("a", "b")}
    assert digests["a"] != digests["b"]
    rng = random.Random(7)
    seen = set()
    for trial in range(30):
        child = subprocess.Popen([sys.executable, "-c", SWAPPER, str(root), DATASET],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
        pointer = parse_pointer(root, DATASET)
        if pointer is None:
            continue  # killed before the first activation finished
        version = pointer.bundle_version
        assert version in digests and pointer.manifest_sha256 == digests[version]
        seen.add(version)
        if trial % 10 == 0:
            assert Router.load(DATASET, artifact="onnx-fp32", bundles_root=root).ready
    assert seen  # at least one kill landed after an activation


def test_disk_full_while_writing_the_pointer(tmp_path: Path, onnx_bundle: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """B18: the old bundle stays active and the partial file is removed."""
    root = _root_with(tmp_path, {"a": onnx_bundle, "b": onnx_bundle})
    activate(root, DATASET, "a")
    before = (root / DATASET / "ACTIVE").read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        activate(root, DATASET, "b")
    monkeypatch.undo()
    assert (root / DATASET / "ACTIVE").read_bytes() == before
    assert [p.name for p in (root / DATASET).iterdir() if p.name.startswith(".")] == []
    assert Router.load(DATASET, artifact="onnx-fp32", bundles_root=root).bundle_dir == \
        root / DATASET / "a"


def test_swap_under_concurrent_load_never_mixes_bundles(onnx_bundle: Path,
                                                        other_bundle: Path) -> None:
    """B19: 16 threads route while the live router swaps between two bundles with different
    tokenizers, model bytes and thresholds (one's tokenizer with the other's model would give
    other scores); every decision matches exactly one bundle."""
    texts = [ROUTINE, "Someone changed my delivery address and I can't sign in.",
             "The tablet arrived cracked and the portal says final sale.", "refund please",
             "I want to return my order, it was delivered after the window closed."]
    reference: dict[str, dict[str, tuple[float, Route]]] = {}
    routers = [Router.load(bundle, artifact="onnx-fp32") for bundle in (onnx_bundle, other_bundle)]
    for r in routers:
        reference[r.manifest_sha256] = {t: (r.route(t).score, r.route(t).route) for t in texts}  # type: ignore[index, misc]
    # A mix would show: one bundle's tokenizer with the other's model scores differently.
    mixed = routers[1]
    mixed._engine = dataclasses.replace(mixed.engine, tokenizer_json=routers[0].engine.tokenizer_json)  # type: ignore[arg-type, union-attr]
    assert any(mixed.route(t).score != reference[mixed.manifest_sha256][t][0] for t in texts)  # type: ignore[index]
    live = LiveRouter(onnx_bundle, artifact="onnx-fp32")
    errors: list[str] = []
    stop = threading.Event()
    counts = [0] * 16

    def work(k: int) -> None:
        while not stop.is_set():
            time.sleep(0.001)  # leave the swapping thread some CPU on a small machine
            for t in texts:
                d = live.route(t)
                want = reference.get(d.manifest_sha256 or "")
                if want is None or (d.score, d.route) != want[t]:
                    errors.append(f"{d.manifest_sha256}: {d.score} {d.route} for {t!r}")
                counts[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for th in threads:
        th.start()
    for i in range(6):
        assert live.reload(other_bundle if i % 2 == 0 else onnx_bundle)
        time.sleep(0.02)
    stop.set()
    for th in threads:
        th.join()
    assert errors == [] and min(counts) > 0


def test_live_router_answers_while_loading(onnx_bundle: Path) -> None:
    """R1: before the first load completes, tickets go to people at once ("loading")."""
    live = LiveRouter.__new__(LiveRouter)
    live.source, live.artifact, live.device, live.options = onnx_bundle, "onnx-fp32", "cpu", {}
    live._router, live._lock, live.loaded = None, threading.Lock(), threading.Event()
    d = live.route(ROUTINE)
    assert d.route is HR and d.reason is Reason.MODEL_UNAVAILABLE and "loading" in d.detail
    assert live.health()["ready"] is False
    background = LiveRouter(onnx_bundle, artifact="onnx-fp32", background=True)
    assert background.loaded.wait(60) and background.health()["ready"]
    assert np.isfinite(background.route(ROUTINE).score)  # type: ignore[arg-type]


def test_a_receipt_whose_composed_fixture_names_no_real_part_fails_closed(copy: Path) -> None:
    """A rewritten, consistent bundle (manifest file table recomputed) whose receipt spec and
    run carry a composed positive built from a part the inventory does not hold: the evidence
    cannot be counted, so the router refuses the bundle and every ticket goes to a person."""
    m = manifest(copy)
    spec_path, run_path = copy / m["receipt"], copy / m["artifacts"]["onnx-fp32"]["receipt_run"]
    spec, run = json.loads(spec_path.read_text()), json.loads(run_path.read_text())
    source = next(r for r in run["rows"] if r["gold"] == 1 and r["slice"] in spec[
        "required_slices"] and not r["fixture_id"].startswith("cmp|"))
    ghost = f"cmp|ghost|{source['fixture_id']}|space"
    spec["fixture_ids"].append(ghost)
    run["rows"].append({"fixture_id": ghost, "slice": f"composed:{source['slice']}", "gold": 1,
                        "score": 0.99})
    spec_path.write_text(json.dumps(spec))
    run_path.write_text(json.dumps(run))
    rewrite(copy, lambda m: None)
    refused(copy, Reason.BUNDLE_INTEGRITY, "receipt_mismatch")
