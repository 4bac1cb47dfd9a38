"""Export -> re-gate on the tiny bundles: ONNX fp32/int8 gated on CPU, Core ML written and gated
(by Core ML on macOS, by the numpy reference executor elsewhere; see test_mil_reference.py).

The tiny fixtures pin their threshold at exactly the lowest required-positive score, so any
numerically different backend lands on either side of it by chance (about 1e-8 for ONNX fp32).
Tests that need a deterministic pass re-pin a copy's threshold a little lower (`repin_threshold`),
which is what a bundle trained with a safety margin would carry; the zero-margin case is tested
on its own for what the gate must then say.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from intakegate.bundle import (
    Artifact,
    BundleError,
    Manifest,
    Status,
    activate,
    parse_pointer,
    sha256_file,
    tree_sha256,
    verify_bundle,
    write_manifest,
)
from intakegate.bundle.pack import pack_bundle
from intakegate.bundle.paths import GOLDEN
from intakegate.export.artifacts import EXPORTABLE, SPECS
from intakegate.export.backends import gate_backend
from intakegate.export.cpu import (
    BlockedMatMuls,
    Int8Settings,
    int8_candidates,
    int8_settings,
    vnni_int8_candidates,
)
from intakegate.export.mil_reference import MIL_REFERENCE
from intakegate.export.pipeline import export_bundle
from intakegate.export.regate import load_inventory, regate_bundle
from intakegate.export.results import ArtifactGate, updated_manifest
from intakegate.hardware import CpuFamily, detect_cpu_family
from intakegate.jsonio import write_json
from intakegate.receipt.gate import load_run, load_spec, release_decision
from tests.runtime_helpers import rewrite

ONNX = [Artifact.ONNX_FP32, Artifact.ONNX_INT8]
COREML = [Artifact.COREML_FP16, Artifact.COREML_INT8]
off_macos = pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")


def copy_bundle(src: Path, root: Path, version: str) -> Path:
    dst = root / "refund-intake" / version
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst)
    return dst


def repin_threshold(bundle: Path, margin: float) -> float:
    """Pin the threshold `margin` below the lowest required positive, as a bundle trained with a
    safety margin would; the reference run must still pass at the new threshold."""
    m = json.loads((bundle / "manifest.json").read_text())
    threshold = m["threshold"] - margin
    m["threshold"] = threshold
    run_path = bundle / m["artifacts"]["torch-fp32"]["receipt_run"]
    run = json.loads(run_path.read_text())
    run["threshold"] = threshold
    write_json(run_path, run)
    write_manifest(bundle, Manifest.parse(m))
    assert release_decision(load_spec(bundle / m["receipt"]), load_run(run_path)).eligible
    return threshold


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "intakegate.cli", *args], capture_output=True,
                          text=True, timeout=300)


def manifest(bundle: Path) -> dict:
    return verify_bundle(bundle).manifest.to_json()


@pytest.fixture(scope="module")
def tiny_exported(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder with a 0.01 threshold margin, all four artifacts exported. Read only."""
    bundle = copy_bundle(tiny_bundle, tmp_path_factory.mktemp("exp-tiny"), "tiny-margin")
    repin_threshold(bundle, 0.0)  # training already pins a 0.25 log-odds margin
    export_bundle(bundle, EXPORTABLE)
    return bundle


@pytest.fixture(scope="module")
def bert_exported(tiny_bert_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT (scores packed near 0.0087), a 1e-3 margin (its int8 graph moves composed
    fixtures' scores by more than 1e-4), all four artifacts. Read only."""
    bundle = copy_bundle(tiny_bert_bundle, tmp_path_factory.mktemp("exp-bert"), "bert-margin")
    repin_threshold(bundle, 1e-3)
    export_bundle(bundle, EXPORTABLE)
    return bundle


@pytest.fixture(params=["tiny_exported", "bert_exported"])
def exported(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def break_classifier(monkeypatch: pytest.MonkeyPatch, factor: float = -10.0) -> None:
    """A broken quantization: the classifier weight is scaled (sign and size) before quantizing."""
    import onnx
    from onnx import numpy_helper

    from intakegate.export import onnx_export

    original = onnx_export.quantize_onnx_int8

    def broken(fp32: Path, out: Path, settings: object, model_dir: Path | None = None) -> dict:
        model = onnx.load(str(fp32))
        producer = {o: n for n in model.graph.node for o in n.output}
        head = producer["logits"]
        assert head.op_type == "Gemm", head.op_type
        weight = next(t for t in model.graph.initializer if t.name == head.input[1])
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * factor,
                                                weight.name))
        path = fp32.with_name("broken-fp32.onnx")
        onnx.save(model, str(path))
        return original(path, out, settings, model_dir)

    monkeypatch.setattr(onnx_export, "quantize_onnx_int8", broken)


# ---------------------------------------------------------------------------------------------
# ONNX: export, re-gate, agreement with torch


def test_onnx_artifacts_re_pass_the_exact_receipt(exported: Path) -> None:
    m = manifest(exported)
    spec = load_spec(exported / m["receipt"])
    for artifact in ONNX:
        entry = m["artifacts"][artifact.value]
        assert (entry["status"], entry["reason"]) == ("eligible_for_shadow", "exact_receipt_pass")
        assert entry["gated_with"] == ("onnxruntime-cpu" if artifact is Artifact.ONNX_FP32
                                       else f"onnxruntime-cpu-{detect_cpu_family().value}")
        run = load_run(exported / entry["receipt_run"])
        assert run.threshold == m["threshold"]
        assert [r.fixture_id for r in run.rows] == list(spec.fixture_ids)
        assert release_decision(spec, run).eligible
        drift = json.loads((exported / entry["drift"]["report"]).read_text())
        assert drift["rows_compared"] == len(spec.fixture_ids)
        assert drift["max_abs_delta"] == entry["drift"]["max_abs_delta"]
    fp32 = m["artifacts"]["onnx-fp32"]
    assert fp32["drift"]["max_abs_delta"] < 1e-4
    assert fp32["drift"]["route_flips"] == []
    assert sorted(p.name for p in (exported / "model/onnx-fp32").iterdir()) == ["model.onnx"]


def test_onnx_graph_is_single_file_with_dynamic_axes(exported: Path) -> None:
    import onnx

    m = manifest(exported)
    for artifact in ONNX:
        entry = m["artifacts"][artifact.value]
        graph = onnx.load(str(exported / entry["path"]), load_external_data=False)
        inputs = [i.name for i in graph.graph.input]
        assert set(inputs) <= {"input_ids", "attention_mask", "token_type_ids"}
        assert [o.name for o in graph.graph.output][:1] == ["logits"]
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
        for i in graph.graph.input:
            assert all(d.dim_param for d in i.type.tensor_type.shape.dim), i.name
        opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
        assert entry["export_settings"]["opset"] == opset
    if m["model_kind"] == "hf-sequence-classification":
        assert "token_type_ids" in m["artifacts"]["onnx-fp32"]["export_settings"]["inputs"]


def test_onnx_fp32_logits_match_torch_on_validation(exported: Path) -> None:
    from tokenizers import Tokenizer

    from intakegate.scoring.encoding import encode_windows, prepare_text

    bundle = verify_bundle(exported)
    inventory = load_inventory(bundle)
    policy = bundle.manifest.input_policy
    tokenizer = Tokenizer.from_str(bundle.read("tokenizer.json").decode())
    texts = [prepare_text(inventory.texts[f], policy).text for f in inventory.spec.fixture_ids]
    windows = encode_windows(tokenizer, texts, policy)
    with gate_backend(Artifact.TORCH_FP32, bundle) as torch_fn, \
            gate_backend(Artifact.ONNX_FP32, bundle) as onnx_fn:
        diff = np.abs(torch_fn(windows) - onnx_fn(windows))
    assert diff.max() < 1e-4


def test_int8_config_is_portable_and_its_receipt_names_the_cpu_family(exported: Path) -> None:
    """One int8 graph for every CPU family (7-bit weights where activations are quantized per
    tensor: no U8S8 saturation anywhere; the dense MatMuls in 8-bit blocks, or dynamic too where
    the receipt keeps that candidate); the family it was gated on is its own `gates` entry."""
    assert detect_cpu_family("aarch64", set()) is CpuFamily.ARM64
    assert detect_cpu_family("x86_64", {"avx2", "avx512_vnni"}) is CpuFamily.AVX512_VNNI
    assert detect_cpu_family("x86_64", {"avx2", "avx512f"}) is CpuFamily.AVX2
    assert detect_cpu_family("x86_64", {"sse4_2"}) is CpuFamily.X86_NO_AVX2
    assert all(int8_settings(f).reduce_range and int8_settings(f).per_channel
               for f in CpuFamily)
    m = manifest(exported)
    entry = m["artifacts"]["onnx-int8"]
    settings = entry["export_settings"]
    family = detect_cpu_family()
    assert settings["exported_on_cpu_family"] == family.value
    assert settings["weight_type"] == "QInt8" and settings["per_channel"] is True
    assert settings["reduce_range"] is True
    assert settings["block_quantized"] == (None if settings["recipe"] == "portable-dynamic" else
                                           {"op_types": ["MatMul"], "which": "remaining",
                                            "bits": 8, "block_size": 32, "accuracy_level": 4,
                                            "symmetric": False})
    assert settings["cpu_families"] == [f.value for f in CpuFamily]
    assert entry["gates"][f"onnxruntime-cpu-{family.value}"]["decision"] == "eligible_for_shadow"
    assert m["artifacts"]["onnx-int8"]["size_bytes"] < m["artifacts"]["onnx-fp32"]["size_bytes"]
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(),
                                                          platform.machine().lower())
    for artifact in ONNX:
        assert m["artifacts"][artifact.value]["device_classes"] == [f"cpu-{machine}"]


def test_runtime_accepts_the_exported_artifacts(exported: Path) -> None:
    """The router's own receipt check binds each ONNX artifact to its re-gated run."""
    from intakegate.runtime.binding import check_artifact

    bundle = verify_bundle(exported)
    for artifact in ONNX:
        bound = check_artifact(bundle, artifact.value)
        assert bound.run.threshold == bundle.threshold


def test_int8_regated_on_another_cpu_family_adds_that_familys_entry(
        tiny_exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gate --record` on a new family keeps the first family's receipt and adds its own."""
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-other-cpu")
    family = detect_cpu_family().value
    other = next(f.value for f in CpuFamily if f.value != family)
    monkeypatch.setenv("INTAKEGATE_CPU_FAMILY", other)
    gates = regate_bundle(bundle, [Artifact.ONNX_INT8], record=True)
    assert gates[0].gated_with == f"onnxruntime-cpu-{other}"
    recorded = manifest(bundle)["artifacts"]["onnx-int8"]["gates"]
    assert {f"onnxruntime-cpu-{family}", f"onnxruntime-cpu-{other}"} <= set(recorded)


def test_each_cpu_family_is_served_by_its_own_int8_receipt(
        tiny_exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gating a second family keeps the first one's run and golden rows; the router on each
    family binds and self-tests against its own (int8 scores differ per family), in the bundle
    and in a pack made from it."""
    from intakegate.runtime import Router
    from intakegate.runtime.binding import check_artifact

    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-two-families")
    family = detect_cpu_family().value
    other = next(f.value for f in CpuFamily if f.value != family)
    monkeypatch.setenv("INTAKEGATE_CPU_FAMILY", other)
    regate_bundle(bundle, [Artifact.ONNX_INT8], record=True)
    entry = verify_bundle(bundle).manifest.artifacts["onnx-int8"]
    runs = {f: entry.family_gate(f).receipt_run for f in (family, other)}
    assert runs == {f: f"receipt/runs/onnx-int8.{f}.json" for f in (family, other)}
    assert entry.receipt_run == runs[other]  # the family recorded last is in force
    golden = json.loads((bundle / GOLDEN).read_text())["artifacts"]
    assert {f"onnx-int8@{family}", f"onnx-int8@{other}"} <= set(golden)
    pack = tmp_path / "pack"
    pack_bundle(bundle, Artifact.ONNX_INT8, pack)
    for declared in (family, other):
        monkeypatch.setenv("INTAKEGATE_CPU_FAMILY", declared)
        for where in (bundle, pack):
            bound = check_artifact(verify_bundle(where), "onnx-int8")
            assert bound.golden_key == f"onnx-int8@{declared}"
            assert bound.run == load_run(where / runs[declared])
            router = Router.load(where, artifact="onnx-int8")
            assert router.ready, router.health()


def test_a_family_that_holds_leaves_the_others_and_device_classes_accumulate(
        tiny_exported: Path) -> None:
    """A second family's pass adds its machine type to the device classes; a family that holds
    is recorded as held without taking the receipt in force (or any family) from the others."""
    m = verify_bundle(tiny_exported).manifest
    entry = m.artifacts["onnx-int8"]
    family = detect_cpu_family().value
    passes, holds = [f.value for f in CpuFamily if f.value != family][:2]
    run = load_run(tiny_exported / str(entry.receipt_run))

    def gate(status: Status, fam: str, device_class: str) -> ArtifactGate:
        return ArtifactGate(Artifact.ONNX_INT8, m.bundle_version, status, "some_reason",
                            f"onnxruntime-cpu-{fam}", run, None, {"device_class": device_class})

    m2 = updated_manifest(m, [gate(Status.ELIGIBLE, passes, "cpu-arm64")])
    after = m2.artifacts["onnx-int8"]
    assert after.device_classes == tuple(sorted({*(entry.device_classes or ()), "cpu-arm64"}))
    assert after.gated_cpu_families() == sorted([family, passes])
    held = updated_manifest(m2, [gate(Status.HOLD, holds, "cpu-x86_64")]).artifacts["onnx-int8"]
    assert held.status is Status.ELIGIBLE and held.gated_with == after.gated_with
    assert held.receipt_run == after.receipt_run
    assert held.family_gate(holds).decision == Status.HOLD.value
    assert held.family_gate(holds).receipt_run is None
    assert held.gated_cpu_families() == sorted([family, passes])


# ---------------------------------------------------------------------------------------------
# Core ML: converted everywhere, gated only where it runs


@off_macos
def test_coreml_packages_are_written_and_gated_by_the_reference_off_macos(exported: Path
                                                                          ) -> None:
    m = manifest(exported)
    bundle = verify_bundle(exported)
    spec = load_spec(exported / m["receipt"])
    for artifact in COREML:
        entry = m["artifacts"][artifact.value]
        # The zero-margin tiny BERT passes or not by fp16 rounding; the decision must be the
        # gate's on the recorded run either way.
        assert entry["status"] in (Status.ELIGIBLE.value, Status.HOLD.value)
        assert entry["gated_with"] == MIL_REFERENCE and "final word" in entry["note"]
        run = load_run(exported / entry["receipt_run"])
        assert release_decision(spec, run).reason == entry["reason"]
        package = exported / entry["path"]
        assert package.name == "model.mlpackage" and (package / "Manifest.json").is_file()
        settings = entry["export_settings"]
        assert settings["minimum_deployment_target"] == "macOS13"
        assert settings["flexible_shape"]["sequence"] == [1, m["max_length"]]
        assert settings["compute_precision"] == "FLOAT16"
        with gate_backend(artifact, bundle) as backend:
            assert backend.gated_with == MIL_REFERENCE
    quant = m["artifacts"]["coreml-int8"]["export_settings"]["weight_quantization"]
    assert quant["mode"] == "linear_symmetric" and quant["dtype"] == "int8"
    assert m["artifacts"]["coreml-int8"]["size_bytes"] < m["artifacts"]["coreml-fp16"][
        "size_bytes"]


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predictions need macOS")
def test_coreml_is_gated_by_core_ml_on_macos(tiny_exported: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-mac")
    gates = regate_bundle(bundle, COREML, record=True)
    m = manifest(bundle)
    for gate in gates:
        assert gate.status in (Status.ELIGIBLE, Status.HOLD)
        entry = m["artifacts"][gate.artifact.value]
        assert entry["gated_with"].startswith("coreml-macos")
        assert (bundle / entry["receipt_run"]).is_file()


# ---------------------------------------------------------------------------------------------
# The manifest and its hashes


def test_manifest_artifact_entries_validate(exported: Path) -> None:
    m = manifest(exported)
    Manifest.parse(m)
    listed = {e["path"] for e in m["files"]}
    for artifact in EXPORTABLE:
        entry = m["artifacts"][artifact.value]
        spec = SPECS[artifact]
        assert (entry["format"], entry["precision"], entry["path"]) == (
            spec.format, spec.precision, spec.path)
        digest, size = tree_sha256(exported, entry["path"])
        assert entry["sha256"] == entry["model_sha256"] == digest
        assert entry["size_bytes"] == size
        assert entry["export_settings"]["source_sha256"] == m["artifacts"]["torch-fp32"]["sha256"]
        assert entry["export_settings"]["export_seconds"] >= 0
        tool = "coremltools" if artifact in COREML else "onnxruntime"
        assert entry["tool_versions"][tool] != "not installed"
        if entry["receipt_run"]:
            assert entry["receipt_run"] in listed
        if entry["drift"]:
            assert entry["drift"]["report"] in listed
            assert m["documents"][Path(entry["drift"]["report"]).name] == entry["drift"]["report"]
    assert m["artifacts"]["torch-fp32"]["receipt_run"] == "receipt/runs/torch-fp32.json"


def test_tampered_artifact_fails_its_hash_and_is_never_blessed(tiny_exported: Path,
                                                                tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-tampered")
    target = bundle / "model/onnx-int8/model.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        verify_bundle(bundle)
    assert info.value.code == "bundle_tampered"
    assert info.value.path == "model/onnx-int8/model.onnx"
    before = sha256_file(bundle / "manifest.json")
    out = cli("gate", str(bundle), "--artifact", "onnx-fp32")
    assert out.returncode == 2, out.stderr
    assert "bundle_tampered" in out.stderr
    with pytest.raises(BundleError, match="bundle_tampered"):
        export_bundle(bundle, [Artifact.ONNX_FP32])
    assert sha256_file(bundle / "manifest.json") == before


def test_tampered_core_ml_weights_fail_the_tree_hash(tiny_exported: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-tampered-coreml")
    weights = next((bundle / SPECS[Artifact.COREML_INT8].path).rglob("weight.bin"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        verify_bundle(bundle)
    assert info.value.code == "bundle_tampered"
    assert info.value.path.startswith("model/coreml-int8/model.mlpackage/")


# ---------------------------------------------------------------------------------------------
# Holds and exit codes


def test_zero_margin_threshold_is_judged_exactly(tiny_bundle: Path, tmp_path: Path) -> None:
    """The fixture's threshold is its lowest required positive: fp32 ONNX sits within 1e-4 of it
    but on whichever side its arithmetic lands, and the gate must say exactly that."""
    bundle = copy_bundle(tiny_bundle, tmp_path, "tiny-zero-margin")
    # Training pins a margin; pin this copy exactly at its lowest required positive instead.
    before = json.loads((bundle / "manifest.json").read_text())
    spec = load_spec(bundle / before["receipt"])
    ref0 = load_run(bundle / "receipt/runs/torch-fp32.json")
    lowest = min(r.score for r in ref0.rows if r.gold == 1 and r.slice in spec.required_slices)
    repin_threshold(bundle, before["threshold"] - lowest)
    result = export_bundle(bundle, [Artifact.ONNX_FP32])
    m = manifest(bundle)
    ref = load_run(bundle / "receipt/runs/torch-fp32.json")
    setter = next(r.fixture_id for r in ref.rows if r.score == m["threshold"])
    run = load_run(bundle / "receipt/runs/onnx-fp32.json")
    score = next(r.score for r in run.rows if r.fixture_id == setter)
    entry = m["artifacts"]["onnx-fp32"]
    assert abs(score - m["threshold"]) < 1e-4
    assert setter in entry["drift"]["thin_margin_required_positives"]
    if score >= m["threshold"]:
        assert entry["status"] == "eligible_for_shadow"
    else:
        assert (entry["status"], entry["reason"]) == ("hold", f"missed:{setter}")
    assert result.gates[0].line() == (f"{m['bundle_version']}/onnx-fp32: "
                                      f"decision={entry['status']} reason={entry['reason']}")


def test_broken_quantization_is_held_with_missed_ids(tiny_bundle: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from intakegate.cli import app

    bundle = copy_bundle(tiny_bundle, tmp_path, "tiny-broken")
    repin_threshold(bundle, 0.0)
    break_classifier(monkeypatch)
    out = CliRunner().invoke(app, ["export", str(bundle), "--artifacts", "onnx-fp32,onnx-int8"])
    assert out.exit_code == 1, out.output
    m = manifest(bundle)
    entry = m["artifacts"]["onnx-int8"]
    assert entry["status"] == "hold" and entry["reason"].startswith("missed:")
    missed = entry["reason"].removeprefix("missed:").split(",")
    spec = load_spec(bundle / m["receipt"])
    run = {r.fixture_id: r for r in load_run(bundle / entry["receipt_run"]).rows}
    for fid in missed:
        assert run[fid].gold == 1 and run[fid].slice in spec.required_slices
        assert run[fid].score < m["threshold"]
    bv = m["bundle_version"]
    assert f"{bv}/onnx-int8: decision=hold reason=missed:" in out.output
    assert f"error: {bv}/onnx-int8 is held: {entry['reason']}" in out.output
    assert m["artifacts"]["onnx-fp32"]["status"] == "eligible_for_shadow"
    assert set(missed) <= set(entry["drift"]["route_flips"])

    ok = cli("gate", str(bundle), "--artifact", "onnx-fp32")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == (f"{bv}/onnx-fp32: decision=eligible_for_shadow "
                                         "reason=exact_receipt_pass")
    assert ok.stdout.splitlines()[1].startswith("  evidence: 0 of ")
    held = cli("gate", str(bundle), "--artifact", "onnx-fp32", "--artifact", "onnx-int8")
    assert held.returncode == 1, held.stderr
    assert f"{bv}/onnx-int8: decision=hold reason={entry['reason']}" in held.stdout


def test_a_held_artifact_keeps_golden_rows_so_the_bench_can_time_it(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A held artifact's own golden rows are written at export: the benchmark's
    measurement-only router still runs the self-test, and a serving router refuses it."""
    from intakegate.runtime import Router

    bundle = copy_bundle(tiny_bundle, tmp_path, "tiny-flipped")
    repin_threshold(bundle, 0.0)
    break_classifier(monkeypatch, factor=-1.0)  # scores mirrored, logits in range: held
    export_bundle(bundle, [Artifact.ONNX_INT8])
    assert manifest(bundle)["artifacts"]["onnx-int8"]["status"] == "hold"
    golden = json.loads((bundle / "receipt" / "golden.json").read_text())
    assert f"onnx-int8@{detect_cpu_family().value}" in golden["artifacts"]
    measured = Router.load(bundle, artifact="onnx-int8", device="cpu",
                           allow_held_for_measurement=True)
    assert measured.ready and measured.measurement_only, measured.health()
    assert Router.load(bundle, artifact="onnx-int8", device="cpu").health()["reason"] == \
        "artifact_held"


def test_gate_bundle_exit_codes(tiny_exported: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-gate")
    bv = manifest(bundle)["bundle_version"]
    onnx_only = cli("gate", str(bundle), "--artifact", "onnx-fp32,onnx-int8")
    assert onnx_only.returncode == 0, onnx_only.stderr
    decisions = [line for line in onnx_only.stdout.splitlines() if not line.startswith("  ")]
    assert decisions == [f"{bv}/{a}: decision=eligible_for_shadow reason=exact_receipt_pass"
                         for a in ("onnx-fp32", "onnx-int8")]
    # Under each decision, what the receipt proves: "  evidence: 0 of N missed: miss rate at
    # most X% at 95%", then the routine FP line.
    evidence = [line for line in onnx_only.stdout.splitlines() if line.startswith("  evidence:")]
    assert len(evidence) == 2 and all(" missed: miss rate at most " in e and e.endswith(
        "at 95%") for e in evidence), onnx_only.stdout
    every = cli("gate", str(bundle), "--record")
    lines = [line for line in every.stdout.splitlines()
             if not line.startswith(("recorded:", "  "))]
    assert [line.split(":")[0] for line in lines] == [f"{bv}/{a.value}" for a in Artifact]
    assert every.returncode == (0 if all("decision=eligible_for_shadow" in line
                                         for line in lines) else 1)
    if sys.platform != "darwin":
        for artifact in COREML:
            entry = manifest(bundle)["artifacts"][artifact.value]
            assert entry["gated_with"] == MIL_REFERENCE
            assert f"{bv}/{artifact.value}: decision={entry['status']} " \
                   f"reason={entry['reason']}" in lines
    assert f"{bv}/torch-fp32: decision=eligible_for_shadow reason=exact_receipt_pass" in lines
    assert cli("gate", str(bundle), "--artifact", "onnx-int9").returncode == 2
    m = manifest(bundle)
    assert m["artifacts"]["torch-fp32"]["receipt_run"] == "receipt/runs/torch-fp32.json"
    assert m["artifacts"]["torch-fp32"]["drift"]["max_abs_delta"] < 1e-6


def test_held_or_unverifiable_bundles_are_not_exported(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path, "tiny-held")
    m = json.loads((bundle / "manifest.json").read_text())
    m["artifacts"]["torch-fp32"].update(status="hold", reason="missed:rwe-044")
    m.update(decision="hold", decision_reason="missed:rwe-044")
    write_manifest(bundle, Manifest.parse(m))
    before = sha256_file(bundle / "manifest.json")
    with pytest.raises(BundleError) as info:
        export_bundle(bundle, [Artifact.ONNX_FP32])
    assert info.value.code == "artifact_held" and "missed:rwe-044" in str(info.value)
    assert sha256_file(bundle / "manifest.json") == before
    assert not (bundle / "model/onnx-fp32").exists()


def test_a_held_model_exported_for_measurement_keeps_every_artifact_held(
        tiny_bundle: Path, tmp_path: Path) -> None:
    """`--measurement-only` lets the bench time a held model's artifacts; an artifact whose
    own run passes the receipt is still held (model_held), and a serving router refuses it."""
    from intakegate.runtime import Router

    bundle = copy_bundle(tiny_bundle, tmp_path, "tiny-held-measured")
    repin_threshold(bundle, 0.0)  # trained with a margin: the int8 run itself passes
    m = json.loads((bundle / "manifest.json").read_text())
    m["artifacts"]["torch-fp32"].update(status="hold", reason="fp_budget:0.14>0.08")
    m.update(decision="hold", decision_reason="fp_budget:0.14>0.08")
    write_manifest(bundle, Manifest.parse(m))
    result = cli("export", str(bundle), "--artifacts", "onnx-int8", "--measurement-only")
    assert result.returncode == 1, result.stderr
    entry = manifest(bundle)["artifacts"]["onnx-int8"]
    assert (entry["status"], entry["reason"]) == ("hold", "model_held:fp_budget:0.14>0.08")
    drift = json.loads((bundle / SPECS[Artifact.ONNX_INT8].drift_report).read_text())
    assert drift["gate"]["decision"] == "eligible_for_shadow"  # its own verdict, kept
    assert "is held: model_held:" in result.stderr
    served = Router.load(bundle, artifact="onnx-int8", device="cpu")
    assert not served.ready and served.health()["reason"] == "artifact_held"
    measured = Router.load(bundle, artifact="onnx-int8", device="cpu",
                           allow_held_for_measurement=True)
    assert measured.ready and measured.measurement_only, measured.health()
    # A manifest rewritten (and re-hashed) to call that artifact eligible: the model is held.
    rewrite(bundle, lambda m: m["artifacts"]["onnx-int8"].update(
        status="eligible_for_shadow", reason="exact_receipt_pass"))
    forged = Router.load(bundle, artifact="onnx-int8", device="cpu")
    assert not forged.ready and "bundle_held" in forged.health()["detail"], forged.health()
    assert forged.route("Someone took money from my card").route == "human_review_now"


def test_failed_export_leaves_the_bundle_as_it_was(tiny_bundle: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from intakegate.export import coreml_export

    bundle = copy_bundle(tiny_bundle, tmp_path, "tiny-fail")
    before = {p.relative_to(bundle): sha256_file(p) for p in bundle.rglob("*") if p.is_file()}

    def fail(*args: object, **kwargs: object) -> None:
        raise coreml_export.CoreMLExportError("simulated converter failure")

    monkeypatch.setattr(coreml_export, "convert_coreml", fail)
    with pytest.raises(coreml_export.CoreMLExportError, match="simulated"):
        export_bundle(bundle, EXPORTABLE)
    after = {p.relative_to(bundle): sha256_file(p) for p in bundle.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["tiny-fail"]


def test_export_into_the_active_bundle_keeps_it_activatable(tiny_bundle: Path,
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    from intakegate.export.regate import gate_bundle_command

    root = tmp_path / "bundles"
    bundle = copy_bundle(tiny_bundle, root, "v1")
    repin_threshold(bundle, 0.0)
    activate(root, "refund-intake", "v1")
    export_bundle(bundle, [Artifact.ONNX_INT8])
    pointer = parse_pointer(root, "refund-intake")
    assert pointer is not None
    assert pointer.manifest_sha256 == sha256_file(bundle / "manifest.json")
    assert gate_bundle_command(Path("refund-intake"), ["onnx-int8"], root) == 0
    bv = manifest(bundle)["bundle_version"]
    assert f"{bv}/onnx-int8: decision=eligible_for_shadow" in capsys.readouterr().out
    assert parse_pointer(root, "refund-intake").manifest_sha256 == sha256_file(
        bundle / "manifest.json")
    assert gate_bundle_command(bundle, ["onnx-fp32"], root) == 1  # not exported


def test_gate_is_read_only_and_record_writes_a_new_manifest_without_repinning(
        tiny_exported: Path, tmp_path: Path) -> None:
    """`intakegate gate` leaves the manifest digest (and ACTIVE) unchanged; `--record` writes a
    new manifest, says so, and still leaves ACTIVE to `bundles activate`."""
    root = tmp_path / "bundles"
    bundle = copy_bundle(tiny_exported, root, "v1")
    activate(root, "refund-intake", "v1")
    before = {p.relative_to(bundle): sha256_file(p) for p in bundle.rglob("*") if p.is_file()}
    pointer = (root / "refund-intake" / "ACTIVE").read_bytes()
    out = cli("gate", "refund-intake", "--artifact", "onnx-int8", "--bundles-dir", str(root),
              "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["gates"][0]["decision"] == "eligible_for_shadow"
    assert report["recorded_manifest_sha256"] is None
    assert {p.relative_to(bundle): sha256_file(p) for p in bundle.rglob("*")
            if p.is_file()} == before
    assert (root / "refund-intake" / "ACTIVE").read_bytes() == pointer
    old_sha = sha256_file(bundle / "manifest.json")
    out = cli("gate", str(bundle), "--artifact", "onnx-int8", "--record")
    assert out.returncode == 0, out.stderr
    assert "recorded: new manifest" in out.stdout and "bundles activate" in out.stdout
    assert sha256_file(bundle / "manifest.json") != old_sha
    assert (root / "refund-intake" / "ACTIVE").read_bytes() == pointer


def test_gate_without_an_extra_reports_not_checked_not_held(tiny_exported: Path,
                                                            tmp_path: Path) -> None:
    """No torch here: torch-fp32 is `not_checked: train` (exit 5), the ONNX artifacts still
    gate, and nothing is written."""
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-no-torch")
    before = sha256_file(bundle / "manifest.json")
    code = ("import sys; sys.modules['torch'] = None; from intakegate.cli import main; "
            f"main(['gate', {str(bundle)!r}, '--artifact', 'torch-fp32', '--artifact', "
            "'onnx-fp32'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 5, out.stdout + out.stderr
    assert "torch-fp32: decision=not_checked: train reason=torch_not_installed" in out.stdout
    assert "onnx-fp32: decision=eligible_for_shadow" in out.stdout
    assert sha256_file(bundle / "manifest.json") == before


@off_macos
def test_linux_regate_keeps_a_core_ml_receipt_from_macos(tiny_exported: Path,
                                                         tmp_path: Path) -> None:
    """Off macOS the reference executor re-gates Core ML, but never replaces a receipt that
    Core ML itself computed: its result is recorded beside it."""
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-mac-receipt")
    m = json.loads((bundle / "manifest.json").read_text())
    run = json.loads((bundle / "receipt/runs/onnx-fp32.json").read_text())
    write_json(bundle / "receipt/runs/coreml-int8.json", run)  # stands in for a macOS run
    m["artifacts"]["coreml-int8"].update(status="eligible_for_shadow", reason="exact_receipt_pass",
                                         receipt_run="receipt/runs/coreml-int8.json",
                                         gated_with="coreml-macos-all")
    write_manifest(bundle, Manifest.parse(m))
    gates = regate_bundle(bundle, [Artifact.COREML_FP16, Artifact.COREML_INT8], record=True)
    assert [g.gated_with for g in gates] == [MIL_REFERENCE] * 2
    after = manifest(bundle)["artifacts"]
    assert after["coreml-int8"]["status"] == "eligible_for_shadow"
    assert after["coreml-int8"]["gated_with"] == "coreml-macos-all"
    assert json.loads((bundle / "receipt/runs/coreml-int8.json").read_text()) == run
    assert after["coreml-int8"]["gates"][MIL_REFERENCE]["decision"] == gates[1].status.value
    assert after["coreml-fp16"]["gated_with"] == MIL_REFERENCE


def test_onnx_regate_needs_no_torch(tiny_exported: Path, tmp_path: Path) -> None:
    """A user re-gates ONNX artifacts with the runtime's libraries only."""
    bundle = copy_bundle(tiny_exported, tmp_path, "tiny-light")
    code = ("import sys; from pathlib import Path; from intakegate.bundle import Artifact; "
            "from intakegate.export.regate import regate_bundle; "
            f"gates = regate_bundle(Path({str(bundle)!r}), [Artifact.ONNX_INT8]); "
            "print(gates[0].status.value, sorted(m for m in ('torch', 'transformers', 'optimum', "
            "'coremltools', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "eligible_for_shadow []"


def test_bert_int8_is_quantized_from_the_fused_graph(bert_exported: Path,
                                                     tiny_exported: Path) -> None:
    """BERT-family graphs are fused (attention, layer norms, gelu) before int8 quantization and
    the manifest says so; the tiny encoder has nothing to fuse and records none."""
    fusion = manifest(bert_exported)["artifacts"]["onnx-int8"]["export_settings"]["graph_fusion"]
    assert fusion["applied"] and fusion["tool"] == "onnxruntime.transformers.optimizer"
    assert fusion["fused_operators"]["Attention"] == 2  # one per layer of the tiny BERT
    tiny = manifest(tiny_exported)["artifacts"]["onnx-int8"]["export_settings"]
    assert tiny["graph_fusion"] is None


# ---------------------------------------------------------------------------------------------
# onnx-int8-vnni: full-range int8, only where integer dot products are exact


def test_full_range_int8_is_gated_and_served_only_where_dot_products_are_exact(
        exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full 8-bit weights saturate VPMADDUBSW (AVX2 without VNNI): on such a family the gate
    holds the artifact without scoring it, and a router refuses it even when asked to compute
    the receipt itself (--verify-on-device)."""
    from intakegate.runtime import Router

    entry = manifest(exported)["artifacts"]["onnx-int8-vnni"]
    settings = entry["export_settings"]
    assert settings["recipe"] in ("full-range", "full-range-dynamic")
    assert settings["reduce_range"] is False
    assert settings["cpu_families"] == ["avx512_vnni", "arm64"]
    family = detect_cpu_family().value
    if family in settings["cpu_families"]:
        assert entry["gates"][f"onnxruntime-cpu-{family}"]["decision"] == "eligible_for_shadow"
    else:
        assert (entry["status"], entry["reason"]) == ("hold", f"cpu_family_inexact:{family}")
    bundle = copy_bundle(exported, tmp_path, "full-range-on-avx2")
    monkeypatch.setenv("INTAKEGATE_CPU_FAMILY", "avx2")
    (gate,) = regate_bundle(bundle, [Artifact.ONNX_INT8_VNNI], record=True)
    assert (gate.status, gate.reason) == (Status.HOLD, "cpu_family_inexact:avx2")
    assert gate.run is None  # nothing was scored on kernels that saturate
    assert manifest(bundle)["artifacts"]["onnx-int8-vnni"]["gates"][
        "onnxruntime-cpu-avx2"]["decision"] == "hold"
    router = Router.load(bundle, artifact="onnx-int8-vnni", verify_on_device=True,
                         cache_dir=tmp_path / "cache")
    assert not router.ready
    assert router.health()["detail"].startswith("cpu_family_inexact: onnx-int8-vnni")
    assert router.route("refund my order").route == "human_review_now"
    assert Router.load(bundle, artifact="onnx-int8", verify_on_device=True,
                       cache_dir=tmp_path / "cache").ready  # the portable graph still serves


def test_int8_recipes_put_the_matmuls_they_name_in_blocks(tmp_path: Path,
                                                          tiny_bert_bundle: Path) -> None:
    """The portable recipe puts every dense MatMul in 8-bit blocks and keeps the fused QKV in
    fp32, the full-range one quantizes QKV and puts only the FFN-down MatMuls (one per layer) in
    blocks, and each faster candidate none: there every MatMul runs an integer kernel."""
    from intakegate.export.materialize import materialize
    from intakegate.export.onnx_export import export_onnx_fp32, quantize_onnx_int8

    bundle = verify_bundle(tiny_bert_bundle)
    model_dir = materialize(bundle, "model/torch-fp32", tmp_path / "reference")
    fp32 = tmp_path / "fp32.onnx"
    export_onnx_fp32(model_dir, bundle.manifest.model_kind, fp32)
    family = detect_cpu_family()
    (portable_fast, portable), (full_fast, full) = (int8_candidates(family),
                                                    vnni_int8_candidates(family))
    ops = {s.recipe: quantize_onnx_int8(fp32, tmp_path / f"{s.recipe}.onnx", s,
                                        model_dir)["quantized_op_counts"]
           for s in (portable_fast, portable, full_fast, full)}
    assert ops["full-range"]["MatMulNBits"] == 2  # the tiny BERT has 2 layers
    assert ops["full-range"]["QAttention"] == 2
    assert "QAttention" not in ops["portable"] and "QAttention" not in ops["portable-dynamic"]
    # Every other MatMul the portable graph puts in blocks runs VNNI's integer kernel here.
    assert ops["full-range"]["MatMulInteger"] == ops["portable"]["MatMulNBits"] - 2 >= 4
    for fast in ("portable-dynamic", "full-range-dynamic"):
        assert "MatMulNBits" not in ops[fast]
        # every MatMul the portable recipe puts in blocks runs an integer kernel instead
        assert ops[fast]["MatMulInteger"] == ops["portable"]["MatMulNBits"]
    assert portable_fast.reduce_range and not full_fast.reduce_range
    assert full_fast.cpu_families == full.cpu_families


def test_export_ships_the_first_int8_candidate_that_gates_as_well_as_the_model(
        exported: Path) -> None:
    """Each int8 artifact records its recipe search; the recipe it ships is the first candidate
    whose receipt was as good as the reference model's own, or the last one; and the shipped
    artifact's own re-gate then says the same as its candidate run did."""
    m = verify_bundle(exported).manifest
    reference = m.artifacts["torch-fp32"]
    for artifact in ("onnx-int8", "onnx-int8-vnni"):
        entry = m.artifacts[artifact]
        search = entry.export_settings["recipe_search"]
        assert [o["kept"] for o in search].count(True) == 1
        kept = next(o for o in search if o["kept"])
        assert entry.export_settings["recipe"] == kept["recipe"]
        if entry.status.value == "hold" and entry.reason.startswith("cpu_family_inexact"):
            assert search[0]["gate_reason"] == "not_tried"
            continue
        if kept is not search[-1]:  # a faster candidate: its gate matched the model's
            assert kept["gate_reason"] == entry.reason
            assert kept["required_missed"] == 0
        for tried in search[:search.index(kept)]:
            assert tried["gate_reason"] != "not_tried" and not tried["kept"]
    assert reference.status.value == "eligible_for_shadow"


def test_a_candidate_recipe_is_kept_only_when_it_gates_as_well_as_the_model(
        tmp_path: Path) -> None:
    """The search keeps the first candidate whose receipt matches the model's (same decision, no
    new required miss, false positives at most a point higher); without a receipt to compute it
    builds only the last candidate."""
    from intakegate.export.recipe_search import as_good_as, choose_recipe
    from intakegate.receipt.gate import GateResult
    from intakegate.vocab import GateDecision

    def result(decision: GateDecision, fp: float | None, missed: tuple[str, ...] = ()
               ) -> GateResult:
        return GateResult("v", decision, "r", missed, fp)

    hold, ok = GateDecision.HOLD, GateDecision.ELIGIBLE_FOR_SHADOW
    model = result(ok, 0.05)
    assert as_good_as(result(ok, 0.059), model)
    assert not as_good_as(result(ok, 0.061), model)
    assert not as_good_as(result(hold, 0.05, ("cmp|a",)), model)  # a new required miss
    assert not as_good_as(result(hold, 0.051), model)  # the budget now holds it
    assert not as_good_as(result(hold, None), model)  # invalid or missing scores
    assert as_good_as(result(hold, 0.13), result(hold, 0.128))  # a held model stays held

    fast, safe = (replace(int8_settings(CpuFamily.AVX2), recipe=r) for r in ("fast", "safe"))
    built: list[str] = []

    def build(settings: Int8Settings, path: Path) -> dict:
        built.append(settings.recipe)
        path.write_text(settings.recipe)
        return {"recipe": settings.recipe}

    for fast_gate, shipped in ((result(ok, 0.055), "fast"), (result(ok, 0.07), "safe")):
        built.clear()
        out = tmp_path / shipped / "model.onnx"
        settings, outcomes = choose_recipe((fast, safe), out, tmp_path, build,
                                           lambda path, g=fast_gate: g, model)
        assert settings["recipe"] == out.read_text() == shipped
        assert [o.kept for o in outcomes] == ([True] if shipped == "fast" else [False, True])
        assert built == (["fast"] if shipped == "fast" else ["fast", "safe"])
    settings, outcomes = choose_recipe((fast, safe), tmp_path / "x.onnx", tmp_path, build, None,
                                       None)
    assert settings["recipe"] == "safe"
    assert [o.reason for o in outcomes] == ["not_tried", "last_candidate"]


def test_the_kept_candidates_run_is_its_re_gate_run_to_the_bit(bert_exported: Path) -> None:
    """The export re-gates a kept int8 candidate with the run the recipe search made of the
    same bytes on the same runtime; scoring the shipped artifact afresh gives that run, row
    for row. A run of other bytes or another runtime is never taken for it."""
    from intakegate.export.regate import ScoredGraph, check_bundle, reusable_run

    m = verify_bundle(bert_exported).manifest
    for artifact in (Artifact.ONNX_INT8, Artifact.ONNX_INT8_VNNI):
        entry = m.artifacts[artifact.value]
        if entry.status.value != "eligible_for_shadow":
            continue
        verified, (fresh,) = check_bundle(bert_exported, [artifact])
        recorded = load_run(bert_exported / entry.receipt_run)
        assert fresh.run is not None and fresh.run.rows == recorded.rows
        kept = next(o for o in entry.export_settings["recipe_search"] if o["kept"])
        drift = json.loads((bert_exported / entry.drift["report"]).read_text())
        assert drift["scored_by"] == ("regate" if kept["gate_reason"] == "last_candidate"
                                      else "recipe_search")
        assert fresh.drift is not None and fresh.drift["scored_by"] == "regate"
        inventory = load_inventory(verified)
        gated_with = fresh.gated_with
        same = ScoredGraph(entry.sha256, gated_with, recorded)
        assert reusable_run(verified, artifact, inventory, gated_with,
                            {entry.sha256: same}).rows == recorded.rows
        for other in (ScoredGraph("0" * 64, gated_with, recorded),
                      ScoredGraph(entry.sha256, "onnxruntime-cpu-other", recorded),
                      ScoredGraph(entry.sha256, gated_with,
                                  replace(recorded, threshold=recorded.threshold + 1e-9)),
                      ScoredGraph(entry.sha256, gated_with,
                                  replace(recorded, rows=recorded.rows[1:]))):
            assert reusable_run(verified, artifact, inventory, gated_with,
                                {other.sha256: other}) is None


def test_blocked_matmuls_pick_by_exported_node_name() -> None:
    """FFN_DOWN (shipped) takes only the FFN-down MatMul of a layer; OUTPUT_DENSE (the study's
    variant) also takes the attention output; REMAINING excludes nothing from the dynamic step."""
    ffn_down = "/encoder/layer.0/output/dense/MatMul"
    attention_out = "/encoder/layer.0/attention/output/dense/MatMul"
    ffn_up = "/encoder/layer.0/intermediate/dense/MatMul"
    assert [BlockedMatMuls.FFN_DOWN.picks(n) for n in (ffn_down, attention_out, ffn_up)] == [
        True, False, False]
    assert [BlockedMatMuls.OUTPUT_DENSE.picks(n) for n in (ffn_down, attention_out, ffn_up)] == [
        True, True, False]
    assert not any(BlockedMatMuls.REMAINING.picks(n) for n in (ffn_down, attention_out, ffn_up))
