"""Turn a bundle directory into one immutable, checked serving engine, or refuse with a reason.

The order follows the reliability plan: verify every file (and the signature, when keys are
trusted), bind the requested artifact to its own receipt (binding.py), check the tokenizer
against the input policy, load the model from the very bytes that were hashed on a validated
device (backends.py), probe the vocabulary and run the golden self-test (selftest.py). Anything
that fails raises `LoadRefused(reason, detail)` (refusal.py); the router turns that into
fail-closed mode. Only caller mistakes (an unknown artifact name, a device that is not there, a
missing extra) raise other errors, because those are startup errors the user must fix. This
module orchestrates those steps and reads the scoring spec (policy, tokenizer, blend, range).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intakegate.bundle import (
    BundleError,
    VerifiedBundle,
    cpu_family_exactness_refusal,
    verify_bundle,
)
from intakegate.bundle.manifest import parse_manifest_bytes
from intakegate.bundle.paths import GOLDEN, MANIFEST
from intakegate.bundle.signing import bind_statement, read_statement
from intakegate.routing import Reason
from intakegate.runtime.backends import build_backend, cpu_family_refusal, this_cpu_family
from intakegate.runtime.binding import check_artifact
from intakegate.runtime.decision import Device
from intakegate.runtime.refusal import HeldNotes, LoadRefused, integrity_reason
from intakegate.runtime.selftest import golden_self_test, probe_vocabulary
from intakegate.scoring.encoding import InputPolicy, token_id_bound, tokenizer_matches_policy
from intakegate.scoring.lexical import LexicalFormatError, ScoreBlend, blend_from_entry
from intakegate.scoring.logit_range import LogitRange
from intakegate.scoring.segments import SegmenterUnavailable, check_segmenter
from intakegate.scoring.ticket_score import ScoreSpec
from intakegate.scoring.tokenizer_pins import checked_settings

log = logging.getLogger(__name__)
PICKLE_MAGIC = tuple(bytes([0x80, proto]) for proto in range(2, 6))
ZIP_MAGIC = b"PK\x03\x04"


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
    # What the publisher signed (intakegate.bundle.signing.Statement); None when no key is trusted.
    signature: Any = None

    @property
    def bundle_version(self) -> str:
        return self.verified.bundle_version

    @property
    def manifest_sha256(self) -> str:
        return self.verified.manifest_sha256



def check_no_pickle(verified: VerifiedBundle) -> None:
    """No file in the bundle may be a pickle or a torch.save zip, whatever its name."""
    for entry in verified.manifest.files:
        path = verified.root / entry.path
        with path.open("rb") as handle:
            head = handle.read(4)
        if head[:2] in PICKLE_MAGIC or head == ZIP_MAGIC:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              f"format_not_allowed: {entry.path} is a pickle or zip archive")


def read_tokenizer(verified: VerifiedBundle, policy: InputPolicy) -> tuple[str, Any, int | None]:
    """tokenizer.json from the verified bytes, checked against the pins and the input policy."""
    from tokenizers import Tokenizer

    path = verified.manifest.tokenizer
    data = verified.read(path)
    entry = verified.manifest.file(path)
    try:
        text = data.decode("utf-8")
        settings, pin_problem = checked_settings(text, entry.sha256 if entry else "",
                                                 verified.manifest.tokenizer_pins)
        mismatch = tokenizer_matches_policy(settings, policy) or pin_problem
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # noqa: BLE001 - any unreadable tokenizer refuses the bundle
        raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                          f"tokenizer_unreadable: {type(exc).__name__}") from None
    if mismatch:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"policy_mismatch: {mismatch}")
    unk = getattr(tokenizer.model, "unk_token", None)
    unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else None
    return text, tokenizer, unk_id


def read_blend(verified: VerifiedBundle) -> ScoreBlend | None:
    """The bundle's score blend from its verified bytes; a malformed one refuses the bundle."""
    try:
        return blend_from_entry(verified.manifest.score_blend, verified.read)
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


def read_logit_range(verified: VerifiedBundle) -> LogitRange | None:
    """The logit range recorded at gate time (intakegate.scoring.logit_range); malformed refuses."""
    raw = verified.manifest.logit_range
    try:
        return None if raw is None else LogitRange.from_json(raw)
    except ValueError as exc:
        raise LoadRefused(Reason.BUNDLE_INTEGRITY, f"manifest_invalid: {exc}") from None



def declared_artifact_path(bundle_dir: Path, artifact: str) -> str | None:
    """Where the (not yet verified) manifest says the artifact is; only used to tell a missing
    model (`model_unavailable`) from another missing file (`bundle_integrity`)."""
    try:
        manifest = parse_manifest_bytes((Path(bundle_dir) / MANIFEST).read_bytes())
    except (OSError, BundleError):  # unknown: the integrity reason applies
        return None
    entry = manifest.artifacts.get(artifact)
    return None if entry is None else entry.path


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
    try:
        # Signature first (intakegate.bundle.signing), when trusted keys are configured.
        statement = read_statement(bundle_dir, trust) if trust is not None else None
        verified = verify_bundle(bundle_dir)
        if statement is not None:
            bind_statement(statement, verified)
        if pinned_manifest_sha256 and verified.manifest_sha256 != pinned_manifest_sha256:
            raise LoadRefused(Reason.BUNDLE_INTEGRITY,
                              "pointer_mismatch: the bundle changed since it was activated")
        bound = check_artifact(verified, artifact, held)
        check_no_pickle(verified)
        policy = verified.manifest.input_policy
        tokenizer_json, tokenizer, unk_id = read_tokenizer(verified, policy)
        head = verified.manifest.score_head
        check_policy_segmenter(policy)
        spec = ScoreSpec(policy, head.positive, len(head.labels),
                         token_id_bound(tokenizer), unk_id,
                         read_blend(verified), read_logit_range(verified))
        backend = build_backend(verified, artifact, bound.art, device, threads, held,
                                verify_on_device)
        probe_vocabulary(backend, tokenizer, spec)
        if str(backend.device) == Device.CPU.value:  # before any receipt, computed or cached
            inexact = cpu_family_exactness_refusal(artifact, this_cpu_family())
            if inexact:
                held.held(inexact)
        if (verify_on_device and str(backend.device) == Device.CPU.value
                and cpu_family_refusal(bound.art) is not None):
            from intakegate.runtime.device_receipt import verify_here

            log.info("%s", verify_here(verified, artifact, bound.art, bound.run, backend.logits,
                                       tokenizer, spec, this_cpu_family(), cache_dir,
                                       LoadRefused))
        selftest = golden_self_test(verified, artifact, bound, backend, tokenizer, spec)
    except BundleError as exc:
        raise integrity_reason(exc, declared_artifact_path(bundle_dir, artifact)) from None
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
