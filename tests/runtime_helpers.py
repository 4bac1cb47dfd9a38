"""Test helpers for the runtime: ONNX artifacts written into bundle copies, manifest surgery.

Until `intakegate export` lands, the fixtures' bundles carry only `torch-fp32`. These helpers
add `onnx-fp32` / `onnx-int8` the way export will: the model exported from the bundle's own
torch weights, the artifact re-scored on the exact validation receipt (its own run, bound to its
own digest), a manifest entry, and `receipt/golden.json` rows for the load-time self-test.

The tiny fixtures choose the threshold as the lowest required-positive torch score, with no
margin, so an ONNX artifact one ulp lower on that row is (correctly) held. `add_onnx_artifacts`
therefore re-scores every artifact one ticket per batch (as the router serves), re-thresholds
the copy at the lowest required-positive score over all those runs, and re-gates every run: the
gate, not the helper, decides eligibility.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from intakegate.bundle import MANIFEST, Manifest, Status, sha256_bytes, write_manifest
from intakegate.jsonio import write_json
from intakegate.receipt.composed import composed_fixtures, is_composed_slice
from intakegate.receipt.gate import GateRow, Run, load_spec, release_decision
from intakegate.scoring.lexical import blend_from_entry
from intakegate.scoring.ticket_score import ScoreSpec, score_texts

GOLDEN = "receipt/golden.json"
ONNX_PATHS = {"onnx-fp32": "model/onnx-fp32/model.onnx",
              "onnx-int8": "model/onnx-int8/model.onnx"}
PRECISION = {"onnx-fp32": "fp32", "onnx-int8": "int8-dynamic"}
_CACHE: dict[tuple[str, str], Path] = {}


def manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))


def rewrite(bundle: Path, mutate: Callable[[dict[str, Any]], None]) -> str:
    """Change the manifest, recompute the file table, validate and write (a consistent bundle)."""
    m = manifest(bundle)
    mutate(m)
    return write_manifest(bundle, Manifest.parse(m))


def write_raw_manifest(bundle: Path, obj: Any) -> None:
    """Write manifest bytes as given, bypassing validation (for tampering tests)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, indent=2, sort_keys=True)
    (bundle / MANIFEST).write_text(text, encoding="utf-8")


def copy_bundle(src: Path, dst_root: Path, name: str | None = None) -> Path:
    dst = dst_root / (name or src.name)
    shutil.copytree(src, dst)
    return dst


def validation_rows(bundle: Path) -> list[Any]:
    """The receipt's rows (ids, slices, golds and texts): the validation rows of the shipped
    dataset, then the composed fixtures the receipt's recipe builds from them."""
    from intakegate.contract.dataset import load_dataset

    m = manifest(bundle)
    ds = load_dataset(m["dataset"])
    if ds.dataset_version != m["dataset_version"]:
        raise ValueError(f"dataset {ds.dataset_version} != bundle {m['dataset_version']}")
    split = json.loads((bundle / "split_manifest.json").read_text())
    by_id = ds.by_id() if callable(ds.by_id) else ds.by_id
    singles = [by_id[i] for i in split["splits"]["validation"]["ids"]]
    spec = load_spec(bundle / m["receipt"])
    if spec.composed is None:
        return singles
    required = sorted(s for s in spec.required_slices if not is_composed_slice(s))
    return [*singles, *composed_fixtures(singles, required, spec.composed)]


def bundle_tokenizer(bundle: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(bundle / "tokenizer.json"))


def export_onnx_bytes(bundle: Path) -> bytes:
    """torch.onnx.export of the bundle's torch-fp32 model (dynamic batch and length)."""
    import torch

    from intakegate.runtime.torch_backend import TinyEncoderClassifier, load_torch_model

    model = load_torch_model(bundle / "model" / "torch-fp32")
    names = ["input_ids", "attention_mask"]
    if not isinstance(model, TinyEncoderClassifier):
        model.config.return_dict = False
        names.append("token_type_ids")
    dummy = tuple(torch.ones((2, 8), dtype=torch.long) if n != "token_type_ids"
                  else torch.zeros((2, 8), dtype=torch.long) for n in names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    buf = io.BytesIO()
    torch.onnx.export(model, dummy, buf, input_names=names, output_names=["logits"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    return buf.getvalue()


def quantize_bytes(fp32: bytes) -> bytes:
    """Dynamic int8 quantization with onnxruntime's quantizer: per-channel 7-bit weights, which
    are safe on every x86 family (export picks full range where VNNI allows it)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True)
        return dst.read_bytes()


def bundle_score_spec(bundle: Path) -> ScoreSpec:
    m = Manifest.parse(manifest(bundle))
    blend = blend_from_entry(m.score_blend, lambda rel: (bundle / rel).read_bytes())
    return ScoreSpec(m.input_policy, m.score_head.positive, len(m.score_head.labels),
                     bundle_tokenizer(bundle).get_vocab_size(with_added_tokens=True), None,
                     blend)


def score_with(bundle: Path, logits_fn: Any, texts: Sequence[str]) -> list[float]:
    """Scores through the one scoring path (`ticket_score.score_texts`), as every stage
    computes them (each ticket on its own)."""
    scored = score_texts(logits_fn, bundle_tokenizer(bundle), list(texts),
                         bundle_score_spec(bundle))
    return [float(s.score) for s in scored]  # type: ignore[arg-type]


def golden_block(rows: Sequence[Any], scores: Sequence[float], model_sha256: str,
                 required: set[str], k: int = 8, tolerance: float | None = None
                 ) -> dict[str, Any]:
    """K receipt rows to re-score at load: the riskiest edges of the threshold and the ends."""
    pos = sorted((s, r.id) for r, s in zip(rows, scores) if r.gold == 1 and r.slice in required)
    neg = sorted(((s, r.id) for r, s in zip(rows, scores) if r.gold == 0), reverse=True)
    chosen: list[str] = []
    for _, fid in [*pos[:3], *neg[:3], *pos[-1:], *neg[-1:]]:
        if fid not in chosen:
            chosen.append(fid)
    by_id = {r.id: (r, s) for r, s in zip(rows, scores)}
    block: dict[str, Any] = {"model_sha256": model_sha256,
                             "rows": [{"fixture_id": fid, "text": by_id[fid][0].text,
                                       "score": by_id[fid][1]} for fid in chosen[:k]]}
    if tolerance is not None:
        block["tolerance"] = tolerance
    return block


def add_onnx_artifacts(bundle: Path, artifacts: Sequence[str] = ("onnx-fp32", "onnx-int8"),
                       rethreshold: bool = True, golden: bool = True,
                       device_classes: Sequence[str] | None = ("cpu",),
                       margin: float = 0.0) -> Path:
    """Export, re-score on the receipt, re-gate, bind and add golden rows; in place.

    `margin` lowers the threshold further (absolute), e.g. to tell two equivalent bundles apart.
    """
    from intakegate.runtime.onnx_backend import OnnxLogits
    from intakegate.runtime.torch_backend import TorchLogits, load_torch_model

    m = manifest(bundle)
    rows = validation_rows(bundle)
    spec = load_spec(bundle / m["receipt"])
    required = set(spec.required_slices)
    torch_entry = m["artifacts"]["torch-fp32"]
    texts = [r.text for r in rows]
    scores: dict[str, list[float]] = {"torch-fp32": score_with(
        bundle, TorchLogits(load_torch_model(bundle / "model" / "torch-fp32")), texts)}
    model_bytes: dict[str, bytes] = {}
    fp32 = export_onnx_bytes(bundle)
    for name in artifacts:
        data = fp32 if name == "onnx-fp32" else quantize_bytes(fp32)
        model_bytes[name] = data
        scores[name] = score_with(bundle, OnnxLogits(data, "cpu"), texts)
    threshold = float(m["threshold"])
    if rethreshold:
        threshold = min(threshold, *(s for sc in scores.values() for r, s in zip(rows, sc)
                                     if r.gold == 1 and r.slice in required))
    threshold -= margin

    def run_for(name: str) -> Run:
        return Run(m["bundle_version"], spec.identity, threshold,
                   tuple(GateRow(r.id, r.slice, r.gold, s) for r, s in zip(rows, scores[name])))

    golden_doc: dict[str, Any] = {"format": 1, "artifacts": {}}
    if (bundle / GOLDEN).exists():
        golden_doc = json.loads((bundle / GOLDEN).read_text())
    torch_gate = release_decision(spec, run_for("torch-fp32"))
    write_json(bundle / torch_entry["receipt_run"], run_for("torch-fp32").to_json())
    if golden:
        golden_doc["artifacts"]["torch-fp32"] = golden_block(
            rows, scores["torch-fp32"], torch_entry["model_sha256"], required)
    entries = {}
    for name in artifacts:
        rel = ONNX_PATHS[name]
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(model_bytes[name])
        digest = sha256_bytes(model_bytes[name])
        run = run_for(name)
        gate = release_decision(spec, run)
        run_rel = f"receipt/runs/{name}.json"
        write_json(bundle / run_rel, run.to_json())
        entry = {"format": "onnx", "precision": PRECISION[name], "path": rel, "sha256": digest,
                 "model_sha256": digest, "size_bytes": len(model_bytes[name]),
                 "status": (Status.ELIGIBLE if gate.eligible else Status.HOLD).value,
                 "reason": gate.reason, "receipt_run": run_rel, "gated_with": "onnxruntime-cpu"}
        if PRECISION[name] != "fp32":  # int8 receipts are recorded per CPU family
            from intakegate.hardware import cpu_gate_key, detect_cpu_family

            entry["gated_with"] = cpu_gate_key(detect_cpu_family().value)
            entry["gates"] = {entry["gated_with"]: {"decision": entry["status"],
                                                    "reason": gate.reason, "when": "test",
                                                    "receipt_run": run_rel}}
        if device_classes is not None:
            entry["device_classes"] = list(device_classes)
        entries[name] = entry
        if golden:
            golden_doc["artifacts"][name] = golden_block(rows, scores[name], digest, required)
    if golden:
        write_json(bundle / GOLDEN, golden_doc)

    def mutate(obj: dict[str, Any]) -> None:
        obj["threshold"] = threshold
        obj["decision"] = torch_gate.decision.value
        obj["decision_reason"] = torch_gate.reason
        status = Status.ELIGIBLE if torch_gate.eligible else Status.HOLD
        obj["artifacts"]["torch-fp32"].update(status=status.value, reason=torch_gate.reason)
        obj["artifacts"].update(entries)

    rewrite(bundle, mutate)
    return bundle


def permuted_copy(src: Path, dst_root: Path, name: str, seed: int = 1) -> Path:
    """An equivalent but different tiny bundle: token ids permuted in tokenizer.json and the
    embedding rows permuted to match. Scores are identical; tokenizer and model bytes are not,
    and one bundle's tokenizer with the other's model gives different scores (so a mix shows)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    dst = copy_bundle(src, dst_root, name)
    tok = json.loads((dst / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    specials = {t["id"] for t in tok.get("added_tokens") or []}
    specials |= {i for w, i in vocab.items() if w.startswith("[") and w.endswith("]")}
    for entry in ((tok.get("post_processor") or {}).get("special_tokens") or {}).values():
        specials |= set(entry.get("ids", []))
    movable = sorted(i for i in vocab.values() if i not in specials)
    perm = dict(zip(movable, np.random.default_rng(seed).permutation(movable).tolist()))
    tok["model"]["vocab"] = {w: perm.get(i, i) for w, i in vocab.items()}
    (dst / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    weights_path = dst / "model" / "torch-fp32" / "model.safetensors"
    weights = load_file(str(weights_path))
    old = weights["embedding.weight"]
    new = old.copy()
    for before, after in perm.items():
        new[after] = old[before]
    weights["embedding.weight"] = new
    save_file(weights, str(weights_path))
    digest = sha256_bytes(weights_path.read_bytes())

    def bind(m: dict[str, Any]) -> None:
        m["artifacts"]["torch-fp32"].update(sha256=digest, model_sha256=digest)
        repin(dst, m)

    rewrite(dst, bind)
    return dst


def repin(bundle: Path, m: dict[str, Any], with_source: bool = False) -> None:
    """Pin the bundle's tokenizer.json as it is now (a consistent bundle, as train writes;
    `with_source`: with the file's digest too, so a load takes the pinned-source path)."""
    from intakegate.scoring.tokenizer_pins import tokenizer_pins

    path = bundle / m["tokenizer"]
    m["tokenizer_pins"] = tokenizer_pins(path.read_text(encoding="utf-8"),
                                         source=path.read_bytes() if with_source else None)


def cached_onnx_bundle(src: Path, root: Path, name: str,
                       artifacts: Sequence[str] = ("onnx-fp32", "onnx-int8"),
                       permute: bool = False) -> Path:
    """One ONNX-enabled copy of `src` per test session (the export takes a few seconds).

    Module-level cache, so every runtime test module shares it. Never modify the result:
    copy it first (`copy_bundle`).
    """
    key = (str(src), name)
    if key not in _CACHE:
        copied = permuted_copy(src, root, name) if permute else copy_bundle(src, root, name)
        _CACHE[key] = add_onnx_artifacts(copied, artifacts, margin=1e-7 if permute else 0.0)
    return _CACHE[key]
