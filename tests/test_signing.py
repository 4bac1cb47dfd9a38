"""Signed bundles (issue 13; RELIABILITY B10, B11, B24 by signature): once a router trusts
publisher keys, only a bundle whose manifest digest carries a valid, unexpired signature by one
of them serves. Unsigned, tampered, unknown-key, expired and downgraded bundles fail closed with
their reason; the CLI signs and verifies; a tiny bundle goes sign -> verify -> route.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from intakegate.bundle import SIGNATURE, activate, file_table
from intakegate.bundle.signing import (
    TrustPolicy,
    generate_keypair,
    read_statement,
    sign_bundle,
    verify_signed_bundle,
)
from intakegate.routing import Reason
from intakegate.runtime import LiveRouter, Router
from intakegate.vocab import Route
from tests.runtime_helpers import cached_onnx_bundle, copy_bundle, manifest, write_raw_manifest

HR = Route.HUMAN_REVIEW_NOW
ROUTINE = "Where is my package?"
UTC = dt.timezone.utc


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    return {name: generate_keypair(root / name) for name in ("publisher", "stranger")}


@pytest.fixture()
def signed(onnx_bundle: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]) -> Path:
    bundle = copy_bundle(onnx_bundle, tmp_path, "signed")
    sign_bundle(bundle, keys["publisher"][0])
    return bundle


def refused(bundle: Path, sub: str, **kw: Any) -> Router:
    router = Router.load(bundle, artifact="onnx-fp32", **kw)
    health = router.health()
    assert not router.ready and health["reason"] == Reason.BUNDLE_INTEGRITY.value, health
    assert sub in health["detail"], health
    for d in (router.route(ROUTINE), *router.route_batch([ROUTINE])):
        assert d.route is HR and d.reason is Reason.BUNDLE_INTEGRITY and d.score is None
    return router


def test_signed_bundle_loads_with_its_key(signed: Path, keys: Any) -> None:
    router = Router.load(signed, artifact="onnx-fp32", trusted_keys=[keys["publisher"][1]])
    assert router.ready and router.route(ROUTINE).route is Route.GUARDED_AGENT
    assert router.health()["signed_by"] is not None
    # without trusted keys a signature is not required (and not consulted)
    assert Router.load(signed, artifact="onnx-fp32").ready


def test_unsigned_bundle_fails_closed_once_keys_are_trusted(onnx_bundle: Path, keys: Any
                                                            ) -> None:
    refused(onnx_bundle, "signature_missing", trusted_keys=[keys["publisher"][1]])


def test_unknown_key_fails_closed(signed: Path, keys: Any) -> None:
    """B10: from an unpinned key."""
    refused(signed, "signature_untrusted_key", trusted_keys=[keys["stranger"][1]])
    assert Router.load(signed, artifact="onnx-fp32", trusted_keys=[
        keys["stranger"][1], keys["publisher"][1]]).ready  # any one trusted key will do


@pytest.mark.parametrize("case", ["bit-flip", "statement-edit", "other-bundle-sig", "garbage",
                                  "symlink", "extra-field"])
def test_bad_signature_fails_closed(signed: Path, keys: Any, onnx_bundle: Path, tmp_path: Path,
                                    case: str) -> None:
    """B10: signature invalid."""
    sig = signed / SIGNATURE
    doc = json.loads(sig.read_text())
    if case == "bit-flip":
        raw = bytearray(__import__("base64").b64decode(doc["signature"]))
        raw[0] ^= 1
        doc["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
    elif case == "statement-edit":
        doc["statement"]["expires_at"] = "2999-01-01T00:00:00+00:00"
    elif case == "other-bundle-sig":
        other = copy_bundle(onnx_bundle, tmp_path, "other")
        write_raw_manifest(other, {**manifest(other), "notes": ["another release"]})
        sign_bundle(other, keys["publisher"][0])
        doc = json.loads((other / SIGNATURE).read_text())
    elif case == "extra-field":
        doc["trusted"] = True
    if case == "garbage":
        sig.write_bytes(b"\x00not json")
    elif case == "symlink":
        sig.unlink()
        (tmp_path / "elsewhere.sig").write_text(json.dumps(doc))
        sig.symlink_to(tmp_path / "elsewhere.sig")
    else:
        sig.write_text(json.dumps(doc))
    refused(signed, "signature_invalid", trusted_keys=[keys["publisher"][1]])


def test_manifest_rewritten_after_signing_fails_closed(signed: Path, keys: Any) -> None:
    """B24 by signature: the issue's rewritten manifests (golden rows dropped, a tokenizer
    edited, the pins rewritten to match) are consistent bundles; the signature is not."""
    golden = json.loads((signed / "receipt/golden.json").read_text())
    golden["artifacts"]["onnx-fp32"]["rows"] = golden["artifacts"]["onnx-fp32"]["rows"][:1]
    (signed / "receipt/golden.json").write_text(json.dumps(golden))
    m = manifest(signed)
    m["files"] = [e.to_json() for e in file_table(signed)]
    write_raw_manifest(signed, m)
    assert Router.load(signed, artifact="onnx-fp32").ready  # unsigned mode: it would load
    refused(signed, "signature_invalid", trusted_keys=[keys["publisher"][1]])


def test_expired_signature_fails_closed(onnx_bundle: Path, tmp_path: Path, keys: Any) -> None:
    """B11: `expires_at` passed -> bundle_stale."""
    bundle = copy_bundle(onnx_bundle, tmp_path, "expiring")
    expires = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=1)
    sign_bundle(bundle, keys["publisher"][0], expires_at=expires)
    pub = keys["publisher"][1]
    assert Router.load(bundle, artifact="onnx-fp32", trusted_keys=[pub]).ready
    later = TrustPolicy.from_sources([pub], now=expires + dt.timedelta(seconds=1))
    with pytest.raises(Exception, match="bundle_stale"):
        read_statement(bundle, later)  # type: ignore[arg-type]
    sign_bundle(bundle, keys["publisher"][0],
                expires_at=dt.datetime.now(UTC) - dt.timedelta(seconds=1))
    refused(bundle, "bundle_stale", trusted_keys=[pub])


def test_sequence_below_the_floor_is_a_downgrade_unless_allowlisted(
        onnx_bundle: Path, tmp_path: Path, keys: Any) -> None:
    """B11: sequence < stored floor without being an allowlisted rollback -> downgrade."""
    bundle = copy_bundle(onnx_bundle, tmp_path, "old")
    sign_bundle(bundle, keys["publisher"][0], sequence=5)
    pub = keys["publisher"][1]
    assert Router.load(bundle, artifact="onnx-fp32", trusted_keys=[pub], min_sequence=5).ready
    router = refused(bundle, "downgrade", trusted_keys=[pub], min_sequence=6)
    digest = json.loads((bundle / SIGNATURE).read_text())["statement"]["manifest_sha256"]
    assert Router.load(bundle, artifact="onnx-fp32", trusted_keys=[pub], min_sequence=6,
                       allowed_rollbacks=[digest]).ready
    assert router.health()["detail"].startswith("downgrade")


def test_an_unreadable_trusted_key_is_a_startup_error(onnx_bundle: Path, tmp_path: Path,
                                                      keys: Any) -> None:
    (tmp_path / "bad.pub.pem").write_text("not a key")
    for bad in (tmp_path / "bad.pub.pem", tmp_path / "missing.pem", keys["publisher"][0]):
        with pytest.raises(ValueError, match="trusted key"):
            Router.load(onnx_bundle, artifact="onnx-fp32", trusted_keys=[bad])


def test_live_router_and_pointer_keep_the_signature_rule(signed: Path, tmp_path: Path,
                                                         keys: Any, onnx_bundle: Path) -> None:
    root = tmp_path / "bundles"
    copy_bundle(signed, root / "refund-intake", "v1")
    copy_bundle(onnx_bundle, root / "refund-intake", "v2")  # unsigned
    activate(root, "refund-intake", "v1")
    pub = keys["publisher"][1]
    live = LiveRouter("refund-intake", artifact="onnx-fp32", bundles_root=root,
                      trusted_keys=[pub])
    assert live.health()["ready"]
    activate(root, "refund-intake", "v2")
    assert live.reload() is False and live.health()["ready"]  # keeps serving the signed one
    assert live.health()["bundle_dir"].endswith("/v1")


# ---------------------------------------------------------------------------------------------
# CLI: keygen, sign, verify; route and serve with --trusted-key; the tiny sign->verify->route


def cli(*args: str) -> Any:
    from intakegate.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_keygen_sign_verify_route(onnx_bundle: Path, tmp_path: Path) -> None:
    keydir = tmp_path / "keys"
    result = cli("bundles", "keygen", "--out", str(keydir))
    assert result.exit_code == 0, result.output
    paths = [line.split(": ", 1)[1] for line in result.stdout.splitlines()
             if line.startswith(("private key:", "public key:"))]
    private, public = map(Path, paths)
    assert private.exists() and public.exists() and "pub" in public.name
    assert (private.stat().st_mode & 0o777) == 0o600
    again = cli("bundles", "keygen", "--out", str(keydir))  # never overwrites a key
    assert again.exit_code != 0 and "key_exists" in str(again.exception)
    bundle = copy_bundle(onnx_bundle, tmp_path, "b")
    unsigned = cli("bundles", "verify", str(bundle), "--trusted-key", str(public))
    assert unsigned.exit_code == 1 and "signature_missing" in unsigned.stdout
    signed = cli("bundles", "sign", str(bundle), "--key", str(private), "--expires-in-days", "30")
    assert signed.exit_code == 0 and "expires" in signed.stdout, signed.output
    ok = cli("bundles", "verify", str(bundle), "--trusted-key", str(public))
    assert ok.exit_code == 0 and ok.stdout.startswith("verified: "), ok.output
    routed = cli("route", str(bundle), "--artifact", "onnx-fp32", "--trusted-key", str(public),
                 ROUTINE)
    assert routed.exit_code == 0 and routed.stdout.startswith("guarded_agent"), routed.output
    other = tmp_path / "other"
    cli("bundles", "keygen", "--out", str(other))
    wrong = cli("route", str(bundle), "--artifact", "onnx-fp32", "--trusted-key",
                str(other / "intakegate-signing.pub.pem"), ROUTINE)
    assert wrong.exit_code == 3 and "signature_untrusted_key" in wrong.stdout
    assert cli("bundles", "verify", str(bundle), "--trusted-key",
               str(other / "intakegate-signing.pub.pem")).exit_code == 1
    assert verify_signed_bundle(bundle, TrustPolicy.from_sources([public])).expires_at  # type: ignore[arg-type]


def test_serve_stdio_with_trusted_key_fails_closed_on_an_unsigned_bundle(
        onnx_bundle: Path, keys: Any) -> None:
    request = json.dumps({"id": "t1", "text": ROUTINE}).encode() + b"\n"
    health = json.dumps({"op": "health", "id": "h"}).encode() + b"\n"
    proc = subprocess.run([sys.executable, "-m", "intakegate.cli", "serve", str(onnx_bundle),
                           "--stdio", "--trusted-key", str(keys["publisher"][1])],
                          input=request + health, capture_output=True, timeout=120)
    answers = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert answers[0]["op"] == "ready" and answers[0]["ready"] is False  # protocol v1
    assert "signature_missing" in answers[0]["detail"]
    assert answers[1]["route"] == "human_review_now"
    assert answers[1]["reason"] == "bundle_integrity" and "signature_missing" in answers[1][
        "detail"]
    assert answers[2]["op"] == "health" and answers[2]["ready"] is False
