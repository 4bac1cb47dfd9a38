"""Signed bundles: an Ed25519 signature over the manifest digest, by a publisher key.

Why Ed25519 from `cryptography` and not OpenSSF `model-signing`: the router must verify offline
with lean dependencies. `model-signing` brings sigstore, in-toto and their network clients for a
check that here is one signature over one digest (the manifest already lists every file's size and
sha256, which is what an OMS manifest would list). `cryptography` is one wheel, needs no network,
and its Ed25519 keys are small and deterministic.

The signature lives beside the manifest in `manifest.sig` (not listed in the manifest it signs):

    {"format": 1, "algorithm": "ed25519", "statement": {...}, "signature": "<base64>"}

The signature covers the canonical JSON of `statement`: the manifest's sha256, the bundle version
and dataset, the key id, when it was signed, an optional `expires_at` after which the bundle fails
closed (`bundle_stale`), and a `sequence` a client can hold a floor on (`downgrade`). Keys are
trusted only when the caller names them (`Router.load(..., trusted_keys=[...])`,
`--trusted-key`); a bundle never says which key to trust.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intakegate.bundle import (
    MANIFEST,
    SIGNATURE,
    BundleError,
    VerifiedBundle,
    atomic_write,
    sha256_bytes,
    verify_bundle,
)
from intakegate.jsonio import dumps_canonical, loads_strict

FORMAT = 1
ALGORITHM = "ed25519"
MAX_SIGNATURE_BYTES = 64 * 1024
PRIVATE_NAME = "intakegate-signing.key"
PUBLIC_NAME = "intakegate-signing.pub.pem"
STATEMENT_FIELDS = {"manifest_sha256", "bundle_version", "dataset", "key_id", "signed_at",
                    "expires_at", "sequence"}


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - a runtime dependency
        from intakegate.errors import MissingExtraError

        raise MissingExtraError("runtime", "cryptography") from exc
    return serialization, ed25519


def key_id(public_key: Any) -> str:
    """sha256 of the raw 32-byte public key: names a key without trusting what it claims."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def generate_keypair(out_dir: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new private key (PKCS8 PEM, mode 0600) and its public key; return both paths."""
    serialization, ed25519 = _crypto()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = out / PRIVATE_NAME, out / PUBLIC_NAME
    if not force and (private_path.exists() or public_path.exists()):
        raise BundleError("key_exists", f"{private_path} or {public_path} exists; pass --force "
                                        f"to replace them")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def load_private_key(path: str | Path) -> Any:
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError("key_invalid", f"cannot read the private key: {exc}", str(path)) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError("key_invalid", "not an Ed25519 private key", str(path))
    return key


def load_public_key(source: Any) -> Any:
    """An Ed25519 public key from a PEM file path, PEM bytes, or a key object."""
    serialization, ed25519 = _crypto()
    if isinstance(source, ed25519.Ed25519PublicKey):
        return source
    where = None
    try:
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
        else:
            where = str(source)
            data = Path(source).read_bytes()
        key = serialization.load_pem_public_key(data)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError("key_invalid", f"cannot read the public key: {exc}", where) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError("key_invalid", "not an Ed25519 public key", where)
    return key


def _parse_time(value: object, name: str) -> _dt.datetime:
    if not isinstance(value, str):
        raise BundleError("signature_invalid", f"{name} is not a timestamp")
    try:
        when = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise BundleError("signature_invalid", f"{name} {value!r} is not ISO 8601") from None
    if when.tzinfo is None:
        raise BundleError("signature_invalid", f"{name} {value!r} has no time zone")
    return when


@dataclass(frozen=True)
class Statement:
    """What a publisher signed about one manifest."""

    manifest_sha256: str
    bundle_version: str
    dataset: str
    key_id: str
    signed_at: str
    expires_at: str | None
    sequence: int

    def payload(self) -> bytes:
        return dumps_canonical(self.__dict__).encode("utf-8")


def sign_bundle(bundle_dir: str | Path, private_key_path: str | Path,
                expires_at: _dt.datetime | None = None, sequence: int | None = None) -> Path:
    """Verify the bundle, then write `manifest.sig` over its manifest digest; returns its path."""
    key = load_private_key(private_key_path)
    verified = verify_bundle(bundle_dir)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    if expires_at is not None and expires_at.tzinfo is None:
        raise BundleError("signature_invalid", "expires_at needs a time zone")
    statement = Statement(
        manifest_sha256=verified.manifest_sha256,
        bundle_version=verified.manifest.bundle_version,
        dataset=verified.manifest.dataset,
        key_id=key_id(key.public_key()), signed_at=now.isoformat(),
        expires_at=None if expires_at is None else expires_at.isoformat(),
        sequence=int(now.timestamp()) if sequence is None else int(sequence))
    signature = key.sign(statement.payload())
    doc = {"format": FORMAT, "algorithm": ALGORITHM, "statement": statement.__dict__,
           "signature": base64.b64encode(signature).decode("ascii")}
    path = Path(bundle_dir) / SIGNATURE
    atomic_write(path, dumps_canonical(doc).encode("utf-8"))
    return path


@dataclass(frozen=True)
class TrustPolicy:
    """Which publisher keys a router trusts, and the freshness it demands (B10, B11).

    `min_sequence`: the lowest signed sequence the client accepts (its stored floor); a bundle
    below it loads only if its manifest digest is in `allowed_rollbacks`. `now` is for tests.
    """

    keys: tuple[Any, ...]
    min_sequence: int | None = None
    allowed_rollbacks: frozenset[str] = frozenset()
    now: _dt.datetime | None = None
    key_ids: frozenset[str] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_ids", frozenset(key_id(k) for k in self.keys))

    @classmethod
    def from_sources(cls, sources: Iterable[Any] | None, min_sequence: int | None = None,
                     allowed_rollbacks: Sequence[str] = (),
                     now: _dt.datetime | None = None) -> TrustPolicy | None:
        """None when no key is named (signatures not required); else every key must load."""
        if sources is None:
            return None
        if isinstance(sources, (str, bytes, Path)):
            sources = [sources]
        keys = tuple(load_public_key(s) for s in sources)
        if not keys:
            return None
        return cls(keys, min_sequence, frozenset(allowed_rollbacks), now)


def read_statement(bundle_dir: str | Path, trust: TrustPolicy) -> Statement:
    """Check `manifest.sig` against the manifest on disk and the trusted keys; or BundleError
    (`signature_missing`, `signature_invalid`, `signature_untrusted_key`, `bundle_stale`,
    `downgrade`)."""
    root = Path(bundle_dir)
    path = root / SIGNATURE
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BundleError("signature_missing", "the bundle is not signed and trusted keys are "
                                               "configured", str(root)) from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SIGNATURE_BYTES:
        raise BundleError("signature_invalid", "manifest.sig is not a small regular file")
    try:
        doc = loads_strict(path.read_bytes().decode("utf-8"), path=path)
    except Exception as exc:  # noqa: BLE001 - any unreadable signature is invalid
        raise BundleError("signature_invalid", f"manifest.sig unreadable: {exc}") from None
    if (not isinstance(doc, dict) or set(doc) != {"format", "algorithm", "statement",
                                                   "signature"}
            or doc["format"] != FORMAT or doc["algorithm"] != ALGORITHM
            or not isinstance(doc["statement"], dict)
            or set(doc["statement"]) != STATEMENT_FIELDS or not isinstance(doc["signature"], str)):
        raise BundleError("signature_invalid", "manifest.sig does not follow the format")
    body = doc["statement"]
    if (not all(isinstance(body[k], str) for k in STATEMENT_FIELDS - {"expires_at", "sequence"})
            or not (body["expires_at"] is None or isinstance(body["expires_at"], str))
            or type(body["sequence"]) is not int):
        raise BundleError("signature_invalid", "manifest.sig statement has wrong field types")
    statement = Statement(**body)
    matching = [k for k in trust.keys if key_id(k) == statement.key_id]
    if not matching:
        raise BundleError("signature_untrusted_key", f"signed by key {statement.key_id[:16]}, "
                                                     f"which is not a trusted key")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
        matching[0].verify(signature, statement.payload())
    except Exception:  # noqa: BLE001 - InvalidSignature, bad base64: all invalid
        raise BundleError("signature_invalid", "the signature does not verify") from None
    manifest_bytes = (root / MANIFEST).read_bytes()
    if sha256_bytes(manifest_bytes) != statement.manifest_sha256:
        raise BundleError("signature_invalid", "the signature is for another manifest (the "
                                               "manifest changed after signing)")
    now = trust.now or _dt.datetime.now(_dt.timezone.utc)
    _parse_time(statement.signed_at, "signed_at")
    if statement.expires_at is not None and now >= _parse_time(statement.expires_at,
                                                               "expires_at"):
        raise BundleError("bundle_stale", f"the signature expired at {statement.expires_at}")
    if (trust.min_sequence is not None and statement.sequence < trust.min_sequence
            and statement.manifest_sha256 not in trust.allowed_rollbacks):
        raise BundleError("downgrade", f"signed sequence {statement.sequence} is below the "
                                       f"floor {trust.min_sequence} and not an allowed rollback")
    return statement


def verify_signed_bundle(bundle_dir: str | Path, trust: TrustPolicy) -> Statement:
    """Signature first, then every file; the manifest must not change in between."""
    statement = read_statement(bundle_dir, trust)
    bind_statement(statement, verify_bundle(bundle_dir))
    return statement


def bind_statement(statement: Statement, verified: VerifiedBundle) -> None:
    """The verified manifest is the one that was signed, and names the same bundle."""
    if verified.manifest_sha256 != statement.manifest_sha256:
        raise BundleError("signature_invalid", "the manifest changed during verification")
    if (verified.manifest.bundle_version != statement.bundle_version
            or verified.manifest.dataset != statement.dataset):
        raise BundleError("signature_invalid", "the signature names another bundle")


def trust_policy(trusted_keys: Any, min_sequence: int | None = None,
                 allowed_rollbacks: Iterable[str] = ()) -> TrustPolicy | None:
    """The router's TrustPolicy, or None when no key is trusted. A key that cannot be read is
    the caller's mistake: ValueError at startup, naming it."""
    try:
        return TrustPolicy.from_sources(trusted_keys, min_sequence, tuple(allowed_rollbacks))
    except BundleError as exc:
        raise ValueError(f"trusted key: {exc}") from None
