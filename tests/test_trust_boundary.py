"""The trust boundary (issue 13; RELIABILITY B21, B22): a bundle the client did not build can
never make loading run code or read a file that was not hashed.

Each attack from the issue is reproduced against a copy of a tiny bundle and must now fail
closed with its reason; a refused bundle routes every ticket to `human_review_now`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from intakegate.bundle import file_table, sha256_bytes
from intakegate.routing import Reason
from intakegate.runtime import Router
from intakegate.runtime.model_files import CodeInBundle, check_torch_files
from intakegate.runtime.onnx_check import _CHILDREN, external_tensors
from intakegate.vocab import Route
from tests.runtime_helpers import cached_onnx_bundle, copy_bundle, manifest, write_raw_manifest

HR = Route.HUMAN_REVIEW_NOW
ROUTINE = "Where is my package?"
TORCH_DIR = "model/torch-fp32"


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


@pytest.fixture()
def copy(onnx_bundle: Path, tmp_path: Path) -> Path:
    return copy_bundle(onnx_bundle, tmp_path, "copy")


def relist(bundle: Path, **artifact_updates: dict[str, Any]) -> None:
    """Rewrite the manifest's file table to match the files as they are now (what an attacker
    who edits files does), bypassing `write_manifest`'s own refusals."""
    m = manifest(bundle)
    m["files"] = [e.to_json() for e in file_table(bundle)]
    for name, update in artifact_updates.items():
        m["artifacts"][name].update(update)
    write_raw_manifest(bundle, m)


def refused(bundle: Path, reason: Reason, sub: str, artifact: str = "onnx-fp32",
            **kw: Any) -> Router:
    router = Router.load(bundle, artifact=artifact, **kw)
    health = router.health()
    assert not router.ready and health["reason"] == reason.value, health
    assert sub in health["detail"], health
    for d in (router.route(ROUTINE), *router.route_batch([ROUTINE, "hello"])):
        assert d.route is HR and d.reason is reason and d.score is None
    return router


# ---------------------------------------------------------------------------------------------
# B21: no code from a bundle


def _hf_config(**extra: Any) -> bytes:
    cfg = {"model_type": "bert", "vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 1, "intermediate_size": 8, **extra}
    return json.dumps(cfg).encode()


def _as_hf_artifact(copy: Path, config: bytes, code: str | None = None) -> Path:
    """Turn the copy's torch artifact into a Hugging Face-style one with this config.json (and
    optionally a code file beside it), manifest rewritten to match."""
    (copy / TORCH_DIR / "tiny_config.json").unlink()
    (copy / TORCH_DIR / "config.json").write_bytes(config)
    if code is not None:
        (copy / TORCH_DIR / "evil.py").write_text(code)
    relist(copy)
    return copy


EVIL = "import pathlib\npathlib.Path('PWNED').write_text('x')\n"


def test_auto_map_with_a_listed_code_file_is_refused(copy: Path, tmp_path: Path) -> None:
    """The issue's attack: auto_map pointing at a .py file listed in the manifest."""
    _as_hf_artifact(copy, _hf_config(auto_map={
        "AutoModelForSequenceClassification": "evil.EvilModel"}), EVIL)
    refused(copy, Reason.BUNDLE_INTEGRITY, "format_not_allowed", artifact="torch-fp32")


@pytest.mark.parametrize("config,sub", [
    (_hf_config(auto_map={"AutoConfig": "someone/repo--evil.Cfg"}), "auto_map"),
    (_hf_config(text_config={"auto_map": {"AutoModel": "x--y.Z"}}), "text_config.auto_map"),
    (_hf_config(trust_remote_code=True), "trust_remote_code"),
    (_hf_config(model_type="evil-arch"), "model_type 'evil-arch'"),
    (b'{"model_type": "bert", "model_type": "bert"}', "not strict JSON"),
    (b"[1, 2]", "not a JSON object"),
])
def test_configs_that_could_load_code_are_refused_before_transformers(
        copy: Path, config: bytes, sub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config reaches transformers unless it is plain: transformers is made unimportable
    here, so a refusal proves the check ran first."""
    _as_hf_artifact(copy, config)
    monkeypatch.setitem(sys.modules, "transformers", None)
    refused(copy, Reason.BUNDLE_INTEGRITY, sub, artifact="torch-fp32")


def test_the_torch_loader_itself_refuses_auto_map() -> None:
    """Defense in depth: `load_torch_model_from_files` checks too (train/export reuse it)."""
    with pytest.raises(CodeInBundle, match="auto_map"):
        check_torch_files({"config.json": _hf_config(auto_map={"AutoModel": "evil.M"}),
                           "model.safetensors": b""})
    with pytest.raises(CodeInBundle, match="code file"):
        check_torch_files({"modeling_evil.py": b"", "config.json": _hf_config()})
    check_torch_files({"config.json": _hf_config(), "model.safetensors": b""})  # plain: fine


@pytest.mark.parametrize("name", ["evil.py", "docs/x.so", "helper.sh", "a.pyc"])
def test_code_files_anywhere_in_a_bundle_are_refused(copy: Path, name: str) -> None:
    (copy / name).write_bytes(b"print('hi')\n")
    relist(copy)
    refused(copy, Reason.BUNDLE_INTEGRITY, "format_not_allowed")


def test_cli_never_prompts_and_never_reads_stdin(copy: Path, tmp_path: Path) -> None:
    """`printf '1\\n' | intakegate route B --artifact torch-fp32 hello` ran the bundle's code;
    now the bundle is refused, the code never runs, and stdout holds only the answer. Under
    `serve --stdio` the client's request is answered with exactly one JSON line."""
    _as_hf_artifact(copy, _hf_config(auto_map={
        "AutoModelForSequenceClassification": "evil.EvilModel"}), EVIL)
    marker = tmp_path / "PWNED"
    proc = subprocess.run([sys.executable, "-m", "intakegate.cli", "route", str(copy),
                           "--artifact", "torch-fp32", "hello"], input=b"1\n",
                          capture_output=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr.decode()
    out = proc.stdout.decode().splitlines()
    assert len(out) == 1 and out[0].startswith("human_review_now reason=bundle_integrity")
    assert "trust_remote_code" not in proc.stdout.decode() + proc.stderr.decode()
    request = json.dumps({"id": "t1", "text": "hello"}).encode() + b"\n"
    proc = subprocess.run([sys.executable, "-m", "intakegate.cli", "serve", str(copy),
                           "--stdio", "--artifact", "torch-fp32"], input=b"1\n" + request,
                          capture_output=True, timeout=120, cwd=tmp_path)
    answers = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    # Protocol v1: the ready event (not ready), an error for the stray "1" line (which the
    # server read as a request, so loading never read stdin), and the ticket's answer.
    assert [a["op"] for a in answers] == ["ready", "error", "route"]
    assert answers[0]["ready"] is False
    assert answers[2]["id"] == "t1" and answers[2]["route"] == "human_review_now"
    assert answers[2]["reason"] == "bundle_integrity"
    assert not marker.exists() and not (copy / TORCH_DIR / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# B22: every tensor the ONNX model can hold is walked


def _external(name: str = "w", location: str = "secret.bin", flag: bool = True) -> Any:
    import onnx

    t = onnx.TensorProto(name=name, data_type=onnx.TensorProto.FLOAT, dims=[1])
    if flag:
        t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _model(graph: Any, functions: Any = ()) -> bytes:
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("evil", 1)],
                              functions=list(functions))
    return model.SerializeToString()


def _io() -> tuple[Any, Any]:
    import onnx
    from onnx import helper

    return (helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1]))


def crafted(kind: str) -> bytes:
    """A model whose only external reference sits in one place of the protobuf."""
    import onnx
    from onnx import helper

    x, y = _io()
    if kind == "initializer":
        return _model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                        [x], [y], initializer=[_external()]))
    if kind == "initializer-no-flag":  # external_data entries without data_location
        return _model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                        [x], [y], initializer=[_external(flag=False)]))
    if kind == "sparse-values":
        sparse = onnx.SparseTensorProto(values=_external("w"), dims=[4])
        sparse.indices.CopyFrom(helper.make_tensor("i", onnx.TensorProto.INT64, [1], [0]))
        return _model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                        [x], [y], sparse_initializer=[sparse]))
    if kind == "sparse-indices":
        sparse = onnx.SparseTensorProto(dims=[4])
        sparse.values.CopyFrom(helper.make_tensor("w", onnx.TensorProto.FLOAT, [1], [1.0]))
        sparse.indices.CopyFrom(_external("i"))
        return _model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                        [x], [y], sparse_initializer=[sparse]))
    if kind == "node-attribute":
        const = helper.make_node("Constant", [], ["y"], value=_external("c"))
        return _model(helper.make_graph([const], "g", [x], [y]))
    if kind == "node-attribute-list":
        node = helper.make_node("Identity", ["x"], ["y"])
        node.attribute.append(helper.make_attribute("ts", [_external("a"), _external("b")]))
        return _model(helper.make_graph([node], "g", [x], [y]))
    if kind == "sparse-attribute":
        sparse = onnx.SparseTensorProto(values=_external("v"), dims=[4])
        sparse.indices.CopyFrom(helper.make_tensor("i", onnx.TensorProto.INT64, [1], [0]))
        const = helper.make_node("Constant", [], ["y"], sparse_value=sparse)
        return _model(helper.make_graph([const], "g", [x], [y]))
    if kind == "subgraph":
        inner = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "then", [], [y],
                                  initializer=[_external()])
        other = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "else", [], [y])
        cond = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=other)
        c = helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])
        return _model(helper.make_graph([cond], "g", [c, x], [y]))
    if kind == "nested-subgraph":
        deepest = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "d", [], [y],
                                    initializer=[_external()])
        loop_body = helper.make_graph([helper.make_node("If", ["c"], ["y"],
                                                        then_branch=deepest,
                                                        else_branch=deepest)], "b", [], [y])
        outer = helper.make_node("If", ["c"], ["y"], then_branch=loop_body,
                                 else_branch=loop_body)
        c = helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])
        return _model(helper.make_graph([outer], "g", [c, x], [y]))
    if kind == "function-attribute-default":  # the attack
        attr = helper.make_attribute("bias", _external("bias"))
        fn = onnx.FunctionProto(name="EvilAdd", domain="evil", input=["a"], output=["b"],
                                attribute_proto=[attr],
                                opset_import=[helper.make_opsetid("", 17)])
        fn.node.append(helper.make_node("Constant", [], ["k"], value_float=1.0))
        fn.node.append(helper.make_node("Add", ["a", "k"], ["b"]))
        call = helper.make_node("EvilAdd", ["x"], ["y"], domain="evil")
        return _model(helper.make_graph([call], "g", [x], [y]), [fn])
    if kind == "function-node-attribute":
        fn = onnx.FunctionProto(name="F", domain="evil", input=[], output=["b"],
                                opset_import=[helper.make_opsetid("", 17)])
        fn.node.append(helper.make_node("Constant", [], ["b"], value=_external("c")))
        call = helper.make_node("F", [], ["y"], domain="evil")
        return _model(helper.make_graph([call], "g", [x], [y]), [fn])
    if kind == "training-info":
        model = onnx.load_from_string(_model(helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])))
        info = model.training_info.add()
        info.initialization.CopyFrom(helper.make_graph([], "init", [], [],
                                                       initializer=[_external()]))
        return model.SerializeToString()
    raise ValueError(kind)


KINDS = ["initializer", "initializer-no-flag", "sparse-values", "sparse-indices",
         "node-attribute", "node-attribute-list", "sparse-attribute", "subgraph",
         "nested-subgraph", "function-attribute-default", "function-node-attribute",
         "training-info"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_place_a_tensor_can_live_is_walked(kind: str) -> None:
    assert external_tensors(crafted(kind)) >= 1


def test_the_walk_covers_every_tensor_holding_field_of_onnx_proto() -> None:
    """Derived from onnx's own descriptors: any message field from which a TensorProto is
    reachable must be in the walker's map (a new onnx field would fail here, not in the field)."""
    from onnx import ModelProto

    kinds = {"onnx.ModelProto": "model", "onnx.GraphProto": "graph", "onnx.NodeProto": "node",
             "onnx.AttributeProto": "attr", "onnx.TensorProto": "tensor",
             "onnx.SparseTensorProto": "sparse", "onnx.FunctionProto": "function",
             "onnx.TrainingInfoProto": "training"}
    memo: dict[str, bool] = {}

    def holds(desc: Any, stack: tuple[str, ...] = ()) -> bool:
        if desc.full_name == "onnx.TensorProto":
            return True
        if desc.full_name in stack:
            return False
        if desc.full_name not in memo:
            memo[desc.full_name] = any(
                f.message_type is not None and holds(f.message_type, (*stack, desc.full_name))
                for f in desc.fields)
        return memo[desc.full_name]

    todo, seen = [ModelProto.DESCRIPTOR], set()
    while todo:
        desc = todo.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for f in desc.fields:
            if f.message_type is not None and holds(f.message_type):
                assert desc.full_name in kinds, desc.full_name
                assert _CHILDREN[kinds[desc.full_name]].get(f.number) == \
                    kinds[f.message_type.full_name], f"{desc.full_name}.{f.name}"
                todo.append(f.message_type)


def test_function_attribute_external_data_is_refused_before_onnxruntime(
        copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's attack end to end: with `secret.bin` in the working directory, the router
    refuses the model (it used to come up ready after onnxruntime read the file)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"\x00\x00\x80\x3f")
    data = crafted("function-attribute-default")
    rel = "model/onnx-fp32/model.onnx"
    (copy / rel).write_bytes(data)
    relist(copy, **{"onnx-fp32": {"sha256": sha256_bytes(data),
                                  "model_sha256": sha256_bytes(data)}})
    refused(copy, Reason.BUNDLE_INTEGRITY, "onnx_external_data")


def test_a_self_contained_model_passes_the_walk(onnx_bundle: Path) -> None:
    for rel in ("model/onnx-fp32/model.onnx", "model/onnx-int8/model.onnx"):
        assert external_tensors((onnx_bundle / rel).read_bytes()) == 0


# ---------------------------------------------------------------------------------------------
# B23: ACTIVE is checked like `bundles activate`


DATASET = "refund-intake"


def _active_root(tmp_path: Path, onnx_bundle: Path) -> Path:
    from intakegate.bundle import activate

    root = tmp_path / "bundles"
    copy_bundle(onnx_bundle, root / DATASET, "v1")
    activate(root, DATASET, "v1")
    return root


def _write_active(root: Path, **pointer: Any) -> None:
    (root / DATASET / "ACTIVE").write_text(json.dumps(pointer))


@pytest.mark.parametrize("case", ["dotdot", "absolute", "nested", "no-digest", "short-digest",
                                  "dot", "symlink", "not-a-string"])
def test_active_pointer_must_name_a_plain_version_with_its_digest(
        tmp_path: Path, onnx_bundle: Path, case: str) -> None:
    root = _active_root(tmp_path, onnx_bundle)
    good = json.loads((root / DATASET / "ACTIVE").read_text())
    digest = good["manifest_sha256"]
    elsewhere = copy_bundle(onnx_bundle, tmp_path, "elsewhere")
    (root / DATASET / "sub").mkdir()
    copy_bundle(onnx_bundle, root / DATASET / "sub", "v2")
    pointer: dict[str, Any] = {
        "dotdot": {"bundle_version": "../../elsewhere", "manifest_sha256": digest},
        "absolute": {"bundle_version": str(elsewhere), "manifest_sha256": digest},
        "nested": {"bundle_version": "sub/v2", "manifest_sha256": digest},
        "no-digest": {"bundle_version": "v1"},
        "short-digest": {"bundle_version": "v1", "manifest_sha256": digest[:12]},
        "dot": {"bundle_version": "..", "manifest_sha256": digest},
        "symlink": {"bundle_version": "link", "manifest_sha256": digest},
        "not-a-string": {"bundle_version": ["v1"], "manifest_sha256": digest},
    }[case]
    if case == "symlink":
        (root / DATASET / "link").symlink_to(root / DATASET / "v1")
    _write_active(root, **pointer)
    refused(Path(DATASET), Reason.BUNDLE_INTEGRITY, "pointer_invalid", bundles_root=root)


def test_activate_refuses_the_same_names(tmp_path: Path, onnx_bundle: Path) -> None:
    from intakegate.bundle import BundleError, activate

    root = _active_root(tmp_path, onnx_bundle)
    for bad in ("../v1", "/abs", "sub/v1", "..", ""):
        with pytest.raises(BundleError) as info:
            activate(root, DATASET, bad)
        assert info.value.code in ("pointer_invalid", "model_unavailable")
    with pytest.raises(BundleError, match="pointer_invalid"):
        activate(root, "../x", "v1")


def test_a_good_pointer_still_loads_pinned(tmp_path: Path, onnx_bundle: Path) -> None:
    root = _active_root(tmp_path, onnx_bundle)
    router = Router.load(DATASET, artifact="onnx-fp32", bundles_root=root)
    assert router.ready and router.bundle_dir == root / DATASET / "v1"


# ---------------------------------------------------------------------------------------------
# B24: a rewritten manifest cannot change the tokenizer or drop the golden rows


def _edit_tokenizer(copy: Path, edit: Any, repin: bool = False,
                    with_source: bool = False) -> None:
    from tests.runtime_helpers import repin as do_repin

    tok = json.loads((copy / "tokenizer.json").read_text(encoding="utf-8"))
    edit(tok)
    (copy / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    m = manifest(copy)
    if repin:
        do_repin(copy, m, with_source)
    m["files"] = [e.to_json() for e in file_table(copy)]
    write_raw_manifest(copy, m)


def _swap_two_ids(tok: dict[str, Any]) -> None:
    vocab = tok["model"]["vocab"]
    words = sorted(w for w in vocab if w.isalpha())[:2]
    vocab[words[0]], vocab[words[1]] = vocab[words[1]], vocab[words[0]]


def _left(tok: dict[str, Any]) -> None:
    tok["truncation"]["direction"] = "Left"


def _normalizer(tok: dict[str, Any]) -> None:
    tok["normalizer"] = {"type": "Lowercase"} if tok.get("normalizer") is None else None


@pytest.mark.parametrize("edit,sub", [
    (_swap_two_ids, "vocab_sha256"),
    (_left, "truncates from the Left"),
    (_normalizer, "normalizer_sha256"),
])
def test_a_relisted_tokenizer_edit_is_refused(copy: Path, edit: Any, sub: str) -> None:
    """The issue's attacks: each file re-listed in a rewritten manifest, every digest matches;
    the pins (and the policy's truncation direction) refuse it."""
    _edit_tokenizer(copy, edit)
    refused(copy, Reason.BUNDLE_INTEGRITY, sub)
    assert "policy_mismatch" in Router.load(copy, artifact="onnx-fp32").health()["detail"]


@pytest.mark.parametrize("with_source", [False, True])
def test_truncation_direction_is_refused_even_with_the_pins_rewritten(
        copy: Path, with_source: bool) -> None:
    """Also when the rewritten pins name the edited file's digest, so the load trusts the pins
    instead of parsing the file: the pinned settings are still checked."""
    _edit_tokenizer(copy, _left, repin=True, with_source=with_source)
    refused(copy, Reason.BUNDLE_INTEGRITY, "truncates from the Left")


def test_train_pins_the_tokenizer_file_and_a_stale_source_digest_is_checked_in_full(
        copy: Path) -> None:
    """Train records the digest of the tokenizer.json its pins describe; a load of that file
    trusts the pins (no 700 kB parse). An edited, re-listed file no longer has that digest, so
    it is parsed and compared pin by pin, and the swapped ids are found."""
    from intakegate.bundle.hashing import sha256_bytes
    from intakegate.scoring.tokenizer_pins import SOURCE_FIELD

    pins = manifest(copy)["tokenizer_pins"]
    assert pins[SOURCE_FIELD] == sha256_bytes((copy / "tokenizer.json").read_bytes())
    assert Router.load(copy, artifact="onnx-fp32").ready
    _edit_tokenizer(copy, _swap_two_ids)
    assert manifest(copy)["tokenizer_pins"][SOURCE_FIELD] == pins[SOURCE_FIELD]
    refused(copy, Reason.BUNDLE_INTEGRITY, "vocab_sha256")


def test_a_tokenizer_whose_padding_the_policy_forbids_is_refused_on_either_path(
        copy: Path) -> None:
    def pad(tok: dict[str, Any]) -> None:
        tok["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_id": 0,
                          "pad_type_id": 0, "pad_token": "[PAD]", "pad_to_multiple_of": None}

    _edit_tokenizer(copy, pad, repin=True, with_source=True)
    refused(copy, Reason.BUNDLE_INTEGRITY, "enables padding")


def test_a_bundle_without_tokenizer_pins_is_refused(copy: Path) -> None:
    m = manifest(copy)
    del m["tokenizer_pins"]
    write_raw_manifest(copy, m)
    refused(copy, Reason.BUNDLE_INTEGRITY, "pins no tokenizer settings")


def test_golden_rows_removed_and_manifest_rewritten_is_refused(copy: Path) -> None:
    golden = json.loads((copy / "receipt/golden.json").read_text())
    golden["artifacts"].pop("onnx-fp32")
    (copy / "receipt/golden.json").write_text(json.dumps(golden))
    relist(copy)
    refused(copy, Reason.BUNDLE_INTEGRITY, "no golden rows")
