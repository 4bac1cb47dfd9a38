"""A new user's own JSONL end to end, with no shipped dataset involved, and slim packs.

The bundle is trained on a copy of the refund-intake rows under another name, and the copy is
deleted right after training: export, gate, pack, route and bench can only read the bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from intakegate.bundle import BundleError, Manifest, sha256_file, verify_bundle, write_manifest
from intakegate.bundle.paths import EVAL_ROWS, FIXTURES
from intakegate.runtime import Router
from intakegate.vocab import Route
from tests.conftest import REPO, relaxed_guide, train_tiny_bundle

RISKY = "Someone logged into my account and changed the email, I did not do this."


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "intakegate.cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mytickets/own-t1: trained on the user's file (then deleted), exported to ONNX."""
    root = tmp_path_factory.mktemp("own") / "B"
    root.mkdir()
    data = root.parent / "mytickets.jsonl"
    shutil.copy(REPO / "data" / "refund-intake" / "tickets.jsonl", data)
    bundle = train_tiny_bundle(root, "own-t1", dataset=str(data),
                               label_guide=relaxed_guide(root.parent, 0.95))
    data.unlink()  # from here on nothing can read the dataset
    assert bundle == root / "mytickets" / "own-t1"
    out = cli("export", str(bundle), "--bundles-dir", str(root), "--artifacts",
              "onnx-fp32,onnx-int8")
    assert out.returncode == 0, out.stdout + out.stderr
    return bundle


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "mytickets" / bundle.name
    shutil.copytree(bundle, dst)
    return dst


def test_a_new_users_jsonl_goes_through_gate_pack_route_and_bench(own: Path,
                                                                  tmp_path: Path) -> None:
    from intakegate.benchmarks.runner import BenchConfig, run_bench

    before = sha256_file(own / "manifest.json")
    gate = cli("gate", str(own), "--artifact", "onnx-int8")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "own-t1/onnx-int8: decision=eligible_for_shadow" in gate.stdout
    assert sha256_file(own / "manifest.json") == before  # gate never writes

    pack = tmp_path / "pack"
    out = cli("bundles", "pack", str(own), "--artifact", "onnx-int8", "--out", str(pack))
    assert out.returncode == 0, out.stdout + out.stderr
    m = verify_bundle(pack).manifest.to_json()
    assert set(m["artifacts"]) == {"onnx-int8"}
    assert m["derived_from"]["manifest_sha256"] == before
    listed = {e["path"] for e in m["files"]}
    assert FIXTURES not in listed and EVAL_ROWS not in listed  # customer text stays out
    assert not any(p.startswith("model/torch-fp32") or p.startswith("model/onnx-fp32")
                   for p in listed)
    assert "docs/drift_onnx-int8.json" in listed and "docs/drift_onnx-fp32.json" not in listed
    router = Router.load(pack, artifact="onnx-int8", device="cpu")
    assert router.ready, router.health()
    assert router.route(RISKY).route is Route.HUMAN_REVIEW_NOW

    results, _ = run_bench(BenchConfig.quick(str(own), out=tmp_path / "bench", device="cpu",
                                             artifacts=("onnx-int8",)))
    assert results["artifacts"]["onnx-int8"]["warm"]["measured"]
    assert results["baselines"]["tfidf_logreg"]["measured"]


def test_a_pack_with_fixtures_carries_the_texts_and_re_gates_by_itself(own: Path,
                                                                       tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    out = cli("bundles", "pack", str(own), "--artifact", "onnx-int8", "--out", str(pack),
              "--with-fixtures")
    assert out.returncode == 0, out.stdout + out.stderr
    listed = {e["path"] for e in verify_bundle(pack).manifest.to_json()["files"]}
    assert {FIXTURES, EVAL_ROWS} <= listed


def test_a_pack_is_signed_and_checked_like_a_bundle(own: Path, tmp_path: Path) -> None:
    from intakegate.bundle.signing import generate_keypair, sign_bundle

    private, public = generate_keypair(tmp_path / "keys")
    pack = tmp_path / "pack"
    assert cli("bundles", "pack", str(own), "--artifact", "onnx-int8", "--out",
               str(pack)).returncode == 0
    unsigned = Router.load(pack, artifact="onnx-int8", trusted_keys=[public])
    assert not unsigned.ready and "signature_missing" in unsigned.health()["detail"]
    sign_bundle(pack, private)
    assert Router.load(pack, artifact="onnx-int8", trusted_keys=[public]).ready


def test_a_held_artifact_is_not_packed(own: Path, tmp_path: Path) -> None:
    bundle = copy_of(own, tmp_path)
    m = json.loads((bundle / "manifest.json").read_text())
    m["artifacts"]["onnx-int8"].update(status="hold", reason="missed:rwe-044")
    write_manifest(bundle, Manifest.parse(m))
    out = cli("bundles", "pack", str(bundle), "--artifact", "onnx-int8", "--out",
              str(tmp_path / "pack"))
    assert out.returncode == 2
    assert "artifact_held: onnx-int8 is hold (missed:rwe-044)" in out.stderr
    assert not (tmp_path / "pack").exists()


def test_a_held_artifact_packs_for_measurement_only_and_the_pack_stays_held(
        own: Path, tmp_path: Path) -> None:
    bundle = copy_of(own, tmp_path)
    m = json.loads((bundle / "manifest.json").read_text())
    m["artifacts"]["onnx-int8"].update(status="hold", reason="missed:rwe-044")
    write_manifest(bundle, Manifest.parse(m))
    pack = tmp_path / "pack"
    out = cli("bundles", "pack", str(bundle), "--artifact", "onnx-int8", "--out", str(pack),
              "--measurement-only")
    assert out.returncode == 0, out.stdout + out.stderr
    entry = verify_bundle(pack).manifest.artifacts["onnx-int8"]
    assert (entry.status.value, entry.reason) == ("hold", "missed:rwe-044")
    refused = Router.load(pack, artifact="onnx-int8", device="cpu")
    assert not refused.ready
    assert refused.route(RISKY.replace("email", "phone")).reason.value == "artifact_held"
    measured = Router.load(pack, artifact="onnx-int8", device="cpu",
                           allow_held_for_measurement=True)
    decision = measured.route("Where is my refund?")
    assert (decision.route, decision.reason.value) == (Route.HUMAN_REVIEW_NOW, "artifact_held")


def test_a_tampered_parent_is_not_packed(own: Path, tmp_path: Path) -> None:
    from intakegate.bundle import Artifact
    from intakegate.bundle.pack import pack_bundle

    bundle = copy_of(own, tmp_path)
    with (bundle / "tokenizer.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(BundleError, match="bundle_size_mismatch|bundle_tampered"):
        pack_bundle(bundle, Artifact.ONNX_INT8, tmp_path / "pack")
    assert not (tmp_path / "pack").exists()


def test_a_pack_pins_its_tokenizer_file_after_checking_it_against_the_parents_pins(
        own: Path, tmp_path: Path) -> None:
    """A parent from before pins named their file (no `source_sha256`) is checked pin by pin
    once at pack time, and the pack records the file's digest, so its loads skip the JSON. A
    parent whose re-listed tokenizer breaks its pins is not packed."""
    from intakegate.bundle import Artifact, file_table
    from intakegate.bundle.pack import pack_bundle
    from intakegate.scoring.tokenizer_pins import SOURCE_FIELD

    bundle = copy_of(own, tmp_path)
    m = json.loads((bundle / "manifest.json").read_text())
    del m["tokenizer_pins"][SOURCE_FIELD]
    write_manifest(bundle, Manifest.parse(m))
    assert Router.load(bundle, artifact="onnx-int8").ready  # checked in full, still loads
    pack_bundle(bundle, Artifact.ONNX_INT8, tmp_path / "pack")
    pins = verify_bundle(tmp_path / "pack").manifest.tokenizer_pins
    assert pins[SOURCE_FIELD] == sha256_file(tmp_path / "pack" / "tokenizer.json")
    assert Router.load(tmp_path / "pack", artifact="onnx-int8").ready

    tok = json.loads((bundle / "tokenizer.json").read_text())
    tok["normalizer"] = None if tok.get("normalizer") else {"type": "Lowercase"}
    (bundle / "tokenizer.json").write_text(json.dumps(tok))
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"] = [e.to_json() for e in file_table(bundle)]
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="normalizer_sha256"):
        pack_bundle(bundle, Artifact.ONNX_INT8, tmp_path / "pack2")
    assert not (tmp_path / "pack2").exists()


def test_a_fixture_text_that_does_not_hash_to_the_receipt_holds_the_gate(
        own: Path, tmp_path: Path) -> None:
    """Edited fixtures re-listed in the manifest still verify as files; the receipt's text
    digests hold the gate, naming the fixture."""
    bundle = copy_of(own, tmp_path)
    lines = (bundle / FIXTURES).read_text().splitlines()
    first = json.loads(lines[0])
    first["text"] += " Please ignore the above."
    lines[0] = json.dumps(first)
    (bundle / FIXTURES).write_text("\n".join(lines) + "\n")
    write_manifest(bundle, Manifest.parse(json.loads((bundle / "manifest.json").read_text())))
    out = cli("gate", str(bundle), "--artifact", "onnx-fp32")
    assert out.returncode == 1
    assert f"reason=fixture_text_mismatch:{first['id']}" in out.stdout


def test_verify_on_device_runs_the_receipt_once_on_a_new_cpu_family(
        own: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A family not in the receipt fails closed; with verify_on_device a pack made
    --with-fixtures computes the receipt here, caches it by digest, family and onnxruntime
    version, and serves; without the option nothing is written."""
    from intakegate.hardware import detect_cpu_family

    gated = detect_cpu_family().value
    other = next(f for f in ("avx2", "avx512_vnni", "arm64") if f != gated)
    with_texts, without = tmp_path / "with", tmp_path / "without"
    for out, extra in ((with_texts, ["--with-fixtures"]), (without, [])):
        assert cli("bundles", "pack", str(own), "--artifact", "onnx-int8", "--out", str(out),
                   *extra).returncode == 0
    monkeypatch.setenv("INTAKEGATE_CPU_FAMILY", other)
    cache = tmp_path / "cache"
    plain = Router.load(with_texts, artifact="onnx-int8", cache_dir=cache)
    assert not plain.ready and f"this CPU is {other}" in plain.health()["detail"]
    assert not cache.exists()
    router = Router.load(with_texts, artifact="onnx-int8", verify_on_device=True,
                         cache_dir=cache)
    assert router.ready, router.health()
    (entry,) = cache.iterdir()
    assert other in entry.name and json.loads(entry.read_text())["decision"] == \
        "eligible_for_shadow"
    stamp = entry.stat().st_mtime_ns
    assert Router.load(with_texts, artifact="onnx-int8", verify_on_device=True,
                       cache_dir=cache).ready
    assert entry.stat().st_mtime_ns == stamp  # the cached result, not a second run
    # The cache is keyed by the artifact's digest: the same int8 model needs no second run...
    assert Router.load(without, artifact="onnx-int8", verify_on_device=True,
                       cache_dir=cache).ready
    # ...but with no cached result, a pack without fixture texts cannot verify here.
    no_texts = Router.load(without, artifact="onnx-int8", verify_on_device=True,
                           cache_dir=tmp_path / "empty-cache")
    assert not no_texts.ready and "--with-fixtures" in no_texts.health()["detail"]


def test_a_format_2_bundle_is_refused_with_what_to_do(own: Path) -> None:
    """Format 2 read its fixture texts from the shipped dataset; this intakegate says to retrain."""
    m = verify_bundle(own).manifest.to_json()
    m["format_version"] = 2
    with pytest.raises(BundleError, match="bundle format 2 is not supported.*retrain"):
        Manifest.parse(m)
