"""`Router`: load a serving bundle once, then route tickets; fail closed, always with a reason.

    router = Router.load("bundles/refund-intake/v2", artifact="onnx-int8", device="auto")
    decision = router.route("FastShip delivered after the return window closed.")
    decision.route, decision.reason, decision.score   # human_review_now, threshold, 0.91

Every route starts as `human_review_now`; only a valid score below the bundle's threshold, from
`intakegate.routing.route_for_score`, can change it. A router whose bundle failed to load stays
up and sends every ticket to a person with the load failure's reason (`health()` says why).
Tokenizers are per thread (a shared `tokenizers.Tokenizer` can raise "Already borrowed"); the
ONNX session and the torch model are shared, and both are safe to call concurrently. That is
what `route_batch` uses: its tickets are scored side by side on every core (onnxruntime and
tokenizers release the GIL), each still on its own through `score_ticket`, so a ticket's score
does not depend on the batch it came in or on how many workers scored it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from intakegate.bundle import Artifact, BundleError
from intakegate.bundle.signing import trust_policy
from intakegate.errors import MissingExtraError
from intakegate.parallel import cpu_workers, map_in_order
from intakegate.routing import Reason, route_for_score
from intakegate.runtime.budget import score_within_budget
from intakegate.runtime.decision import (
    DecidingSegment,
    Decision,
    Device,
    input_digest,
    is_safe_agent_decision,
)
from intakegate.runtime.guard import contained, last_resort
from intakegate.runtime.loader import Engine, load_engine
from intakegate.runtime.onnx_backend import DeviceUnavailable
from intakegate.runtime.refusal import LoadRefused, integrity_reason
from intakegate.runtime.resolve import resolve_source
from intakegate.runtime.textguard import obfuscation
from intakegate.scoring.bounds import window_overflow
from intakegate.scoring.encoding import Windows, encode_windows, prepare_text, raw_span
from intakegate.scoring.segments import SegmentKind
from intakegate.scoring.ticket_score import Scored, score_ticket
from intakegate.vocab import FALLBACK_ROUTE, Route

log = logging.getLogger(__name__)
BATCH = 32


class Router:
    """A loaded bundle that routes tickets. Build with `Router.load(...)` or `Router(...)`."""

    def __init__(self, bundle: str | Path, artifact: str = Artifact.ONNX_INT8.value,
                 device: str = Device.AUTO.value, threads: int | None = None,
                 bundles_root: str | Path = "bundles", shadow_log: Any = None,
                 shadow_log_text: bool = False, timeout_s: float | None = None,
                 require_selftest: bool = False,
                 allow_held_for_measurement: bool = False,
                 trusted_keys: Any = None, min_sequence: int | None = None,
                 allowed_rollbacks: Sequence[str] = (), verify_on_device: bool = False,
                 cache_dir: str | Path | None = None) -> None:
        """Load and check the bundle. Raises only for caller mistakes: an unknown artifact or
        device name, an explicit device that is not there, or a missing extra (torch).

        `allow_held_for_measurement` (default off; only `intakegate bench` sets it, never
        route/serve) loads a held artifact, a held bundle or a device outside the receipt so
        its speed can be measured through this very path. Integrity checks still apply, and
        every decision of such a router is `human_review_now` / `artifact_held` with a
        `measurement_only:` detail naming why the artifact is held.

        `trusted_keys` (Ed25519 public key files, PEM bytes or key objects): once given, the
        bundle must carry a valid, unexpired `manifest.sig` by one of them, or the router is
        fail-closed (`bundle_integrity` / `signature_*`, `bundle_stale`, `downgrade`). An
        unreadable key is a startup error (ValueError). `min_sequence` is the client's stored
        floor on the signed sequence; `allowed_rollbacks` lists manifest digests allowed below it.

        `verify_on_device` (default off): on a CPU family the int8 receipt does not cover, run
        the full receipt once here (the bundle must carry its fixtures: a pack made
        `--with-fixtures`), cache the result in `cache_dir` (default: the user cache directory)
        keyed by artifact digest, CPU family and onnxruntime version, and serve only if it
        passed. Without the option nothing is written and such a family fails closed.
        """
        try:
            self.artifact = Artifact(artifact).value
        except ValueError:
            raise ValueError(f"unknown artifact {artifact!r}; use one of "
                             f"{[a.value for a in Artifact]}") from None
        try:
            self.requested_device = Device(device).value
        except ValueError:
            raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from None
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError("timeout_s must be a positive number of seconds")
        self.source = str(bundle)
        self.timeout_s = timeout_s
        self.trust = trust_policy(trusted_keys, min_sequence, allowed_rollbacks)
        self._local = threading.local()
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._engine: Engine | None = None
        self._failure: tuple[Reason, str] = (Reason.MODEL_UNAVAILABLE, "not loaded")
        self.bundle_dir: Path | None = None
        try:
            self.bundle_dir, pinned = resolve_source(bundle, bundles_root)
            self._engine = load_engine(self.bundle_dir, self.artifact, self.requested_device,
                                       threads, pinned, require_selftest,
                                       allow_held=allow_held_for_measurement, trust=self.trust,
                                       verify_on_device=verify_on_device,
                                       cache_dir=None if cache_dir is None else Path(cache_dir))
        except LoadRefused as exc:
            self._failure = (exc.reason, exc.detail)
        except BundleError as exc:
            refused = integrity_reason(exc)
            self._failure = (refused.reason, refused.detail)
        except (DeviceUnavailable, MissingExtraError):
            raise
        except Exception as exc:  # noqa: BLE001 - any load fault means fail-closed mode
            self._failure = (Reason.MODEL_UNAVAILABLE, f"load_failed: {type(exc).__name__}: "
                                                       f"{str(exc)[:300]}")
        if self._engine is None:
            log.error("ROUTER FAIL-CLOSED: %s (%s, artifact %s): every ticket goes to "
                      "human_review_now with reason %s: %s", self.source, self.bundle_dir,
                      self.artifact, self._failure[0].value, self._failure[1])
        else:
            e = self._engine
            if e.load_tokenizer is not None:  # this thread's tokenizer: the one the load checked
                self._local.tokenizer, self._local.engine = e.load_tokenizer, e
            log.info("router ready: %s (%s) artifact %s on %s %s, threshold %.6g, selftest %s",
                     e.bundle_version, e.manifest_sha256[:12], e.artifact, e.device,
                     list(e.providers), e.threshold, e.selftest)
        self.shadow = self._open_shadow(shadow_log, shadow_log_text)

    @classmethod
    def load(cls, bundle: str | Path, artifact: str = Artifact.ONNX_INT8.value,
             device: str = Device.AUTO.value, threads: int | None = None,
             bundles_root: str | Path = "bundles", shadow_log: Any = None,
             **options: Any) -> Router:
        """A bundle directory, or a dataset name resolved through `bundles/<name>/ACTIVE`."""
        return cls(bundle, artifact, device, threads, bundles_root, shadow_log, **options)

    # -----------------------------------------------------------------------------------------
    # State

    @property
    def ready(self) -> bool:
        """True when a verified bundle is loaded; False means every ticket goes to people."""
        return self._engine is not None

    @property
    def threshold(self) -> float | None:
        return self._engine.threshold if self._engine else None

    @property
    def bundle_version(self) -> str | None:
        return self._engine.bundle_version if self._engine else None

    @property
    def manifest_sha256(self) -> str | None:
        return self._engine.manifest_sha256 if self._engine else None

    @property
    def device(self) -> str:
        return self._engine.device if self._engine else self.requested_device

    @property
    def providers(self) -> tuple[str, ...]:
        return self._engine.providers if self._engine else ()

    @property
    def measurement_only(self) -> bool:
        """True for a held artifact loaded only to be timed: every ticket goes to a person."""
        return bool(self._engine and self._engine.held)

    @property
    def engine(self) -> Engine | None:
        """The loaded engine (tests and diagnostics); None in fail-closed mode."""
        return self._engine

    def health(self) -> dict[str, Any]:
        """Ready or not, and why; what is loaded; how many decisions per reason so far."""
        e = self._engine
        with self._count_lock:
            counts = dict(self._counts)
        return {
            "ready": e is not None,
            "reason": None if e else self._failure[0].value,
            "detail": None if e else self._failure[1],
            "source": self.source,
            "bundle_dir": None if self.bundle_dir is None else str(self.bundle_dir),
            "bundle_version": e.bundle_version if e else None,
            "manifest_sha256": e.manifest_sha256 if e else None,
            "threshold": e.threshold if e else None,
            "artifact": self.artifact,
            "device": self.device,
            "providers": list(self.providers),
            "threads": e.threads if e else None,
            "selftest": e.selftest if e else None,
            "signed_by": e.signature.key_id if e and e.signature else None,
            "signature_expires_at": e.signature.expires_at if e and e.signature else None,
            "measurement_only": list(e.held) if e and e.held else None,
            "decisions": counts,
            "shadow_log_failures": self.shadow.failures if self.shadow else 0,
        }

    # -----------------------------------------------------------------------------------------
    # Routing

    def route(self, text: object, ticket_id: str | int | None = None,
              with_text: bool = False) -> Decision:
        """Route one ticket. Never raises; always one of the two routes.

        `with_text=True` puts the deciding segment's text into `decision.segment.text` (off by
        default: a decision carries no ticket content unless the caller asks)."""
        try:
            return self._route_batch([text], None if ticket_id is None else [ticket_id],
                                     with_text)[0]
        except BaseException as exc:  # noqa: BLE001 - see contained()
            return last_resort(self, exc, 1)[0]

    def route_bytes(self, data: object, ticket_id: str | int | None = None) -> Decision:
        """Route raw bytes: strict UTF-8, or `human_review_now` / `invalid_unicode`.

        Only bytes, bytearray and memoryview are read (through the buffer protocol, so no
        `__bytes__` of the caller's runs); an int is never turned into a zero-filled buffer.
        """
        try:
            return self._route_bytes(data, ticket_id)
        except BaseException as exc:  # noqa: BLE001 - see contained()
            return last_resort(self, exc, 1)[0]

    def _route_bytes(self, data: object, ticket_id: str | int | None) -> Decision:
        if not issubclass(type(data), (bytes, bytearray, memoryview)):
            return self.reject(Reason.INPUT_NOT_TEXT, f"input_type: {type(data).__name__}",
                               ticket_id, None)
        raw = memoryview(data).tobytes()  # type: ignore[arg-type]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self.reject(Reason.INVALID_UNICODE, f"invalid_utf8: {exc}"[:200], ticket_id,
                               raw)
        return self._route_batch([text], None if ticket_id is None else [ticket_id])[0]

    def route_batch(self, texts: Iterable[object],
                    ticket_ids: Sequence[str | int | None] | None = None,
                    with_text: bool = False, workers: int | None = None) -> list[Decision]:
        """Route many tickets, in order, one decision each. Never raises. Each ticket is
        scored on its own (its score never depends on the other tickets of the batch).

        `workers` tickets are scored at once (default: one per CPU core; 1: all in the calling
        thread). A fault while scoring one ticket sends that ticket alone to a person."""
        try:
            return self._route_batch(texts, ticket_ids, with_text, workers)
        except BaseException as exc:  # noqa: BLE001 - see contained()
            return last_resort(self, exc, None)

    def _route_batch(self, texts: Iterable[object],
                     ticket_ids: Sequence[str | int | None] | None = None,
                     with_text: bool = False, workers: int | None = 1) -> list[Decision]:
        if isinstance(texts, (str, bytes, bytearray)):
            log.warning("route_batch got one %s, not a list of tickets; routing it as one "
                        "ticket", type(texts).__name__)
            texts = [texts]
        try:
            items = list(texts)
        except BaseException as exc:  # noqa: BLE001 - an unreadable batch is one refused ticket
            if not contained(exc):
                raise
            return [self.reject(Reason.INPUT_NOT_TEXT, f"unreadable batch: {type(exc).__name__}",
                                None, None)]
        ids: list[str | int | None] = [None] * len(items)
        mismatch = False
        if ticket_ids is not None:
            try:
                given = list(ticket_ids)
            except BaseException as exc:  # noqa: BLE001 - unreadable ids: all go to a person
                if not contained(exc):
                    raise
                given = []
            if len(given) == len(items):
                ids = given
            else:
                mismatch = True
        out: list[Decision] = []
        for start in range(0, len(items), BATCH):
            chunk, chunk_ids = items[start:start + BATCH], ids[start:start + BATCH]
            if mismatch:
                decisions = [self._fallback(Reason.INPUT_NOT_TEXT, "ticket_ids length != texts",
                                            None, t) for t in chunk]
            else:
                decisions = self._route_chunk(chunk, chunk_ids, with_text,
                                              worker_count(workers))
            self._record(decisions, chunk)
            out.extend(decisions)
        return out

    def reject(self, reason: Reason, detail: str, ticket_id: str | int | None, raw: object
               ) -> Decision:
        """A refused input (bad JSON line, bad bytes) as a recorded human_review_now decision."""
        try:
            decision = self._fallback(reason, detail, ticket_id, raw)
            self._record([decision], [None])
            return decision
        except BaseException as exc:  # noqa: BLE001 - see contained()
            return last_resort(self, exc, 1)[0]

    def encode(self, text: object) -> Windows | None:
        """The windows the model sees for a ticket (None when the policy refuses it)."""
        e = self._engine
        if e is None:
            return None
        prepared = prepare_text(text, e.spec.policy)
        if prepared.text is None:
            return None
        return encode_windows(self._tokenizer(e), [prepared.text], e.spec.policy)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.shadow is not None:
            self.shadow.close()

    # -----------------------------------------------------------------------------------------
    # Internals

    def _route_chunk(self, chunk: list[object], ids: list[str | int | None],
                     with_text: bool = False, workers: int = 1) -> list[Decision]:
        try:
            return self._route_chunk_unsafe(chunk, ids, with_text, workers)
        except MemoryError:
            return [self._fallback(Reason.MODEL_ERROR, "resource_exhausted: MemoryError", i, t)
                    for t, i in zip(chunk, ids)]
        except BaseException as exc:  # noqa: BLE001 - a fault anywhere routes to a person
            if not contained(exc):
                raise
            log.exception("routing fault (%s); %d ticket(s) sent to human review",
                          type(exc).__name__, len(chunk))
            return [self._fallback(Reason.MODEL_ERROR, f"router_error: {type(exc).__name__}",
                                   i, t) for t, i in zip(chunk, ids)]

    def _route_chunk_unsafe(self, chunk: list[object], ids: list[str | int | None],
                            with_text: bool, workers: int = 1) -> list[Decision]:
        e = self._engine
        if e is None:
            reason, detail = self._failure
            return [self._fallback(reason, detail, i, t) for t, i in zip(chunk, ids)]
        results: list[Decision | None] = [None] * len(chunk)
        to_score: list[tuple[int, str]] = []
        for k, (text, ticket_id) in enumerate(zip(chunk, ids)):
            prepared = prepare_text(text, e.spec.policy)
            if prepared.text is None:
                detail = prepared.detail
                if prepared.reason is Reason.INPUT_NOT_TEXT:
                    detail = f"input_type: {type(text).__name__}"
                results[k] = self._fallback(prepared.reason or Reason.MODEL_ERROR, detail,
                                            ticket_id, text)
                continue
            hidden = obfuscation(prepared.text)
            if hidden is not None:
                results[k] = self._fallback(Reason.OBFUSCATION, hidden, ticket_id, text)
                continue
            if prepared.stripped_controls:
                log.debug("stripped %d control character(s) from ticket %s",
                          prepared.stripped_controls, ticket_id)
            to_score.append((k, prepared.text))
        if to_score:
            scored = self._score(e, [t for _, t in to_score], workers)
            for (k, prepared_text), s in zip(to_score, scored):
                results[k] = self._decide(e, prepared_text, s, ids[k], chunk[k], with_text)
        return [r if r is not None else self._fallback(Reason.MODEL_ERROR, "router_error: "
                                                       "no decision", ids[k], chunk[k])
                for k, r in enumerate(results)]

    def _decide(self, e: Engine, prepared_text: str, s: Scored, ticket_id: str | int | None,
                raw: object, with_text: bool = False) -> Decision:
        """The one place a route other than the fallback can come from."""
        if s.failure is not None:
            return self._fallback(s.failure, s.detail, ticket_id, raw, windows=s.windows,
                                  unk_ratio=s.unk_ratio)
        route, reason = route_for_score(prepared_text, s.score, e.threshold)
        segment = _deciding_segment(e, s, prepared_text, raw, with_text)
        detail = ""
        if (segment is not None and segment.kind != SegmentKind.WHOLE.value
                and route is Route.HUMAN_REVIEW_NOW):
            detail = (f"risk_in_segment: {segment.kind} {segment.index} "
                      f"[{segment.start}:{segment.end}] of {len(s.segments)}")
        if e.held:  # a measurement-only router never admits a ticket; it says why
            return self._fallback(Reason.ARTIFACT_HELD, f"measurement_only: would_route="
                                  f"{route.value} score={s.score:.6g}; {'; '.join(e.held)}",
                                  ticket_id, raw, windows=s.windows, unk_ratio=s.unk_ratio)
        decision = Decision(route, reason, s.score, e.threshold, e.bundle_version, e.artifact,
                            e.device, e.manifest_sha256, e.providers, s.windows, s.max_window,
                            input_digest(raw), ticket_id, s.unk_ratio, detail, segment)
        if route is Route.GUARDED_AGENT and not is_safe_agent_decision(decision):
            return self._fallback(Reason.MODEL_ERROR, "router_error: unsafe agent decision "
                                  "blocked", ticket_id, raw)
        return decision

    def _fallback(self, reason: Reason, detail: str, ticket_id: str | int | None, raw: object,
                  windows: int = 0, unk_ratio: float | None = None) -> Decision:
        e = self._engine
        return Decision(FALLBACK_ROUTE, reason, None, e.threshold if e else None,
                        e.bundle_version if e else None, self.artifact, self.device,
                        e.manifest_sha256 if e else None, self.providers, windows, None,
                        input_digest(raw), ticket_id, unk_ratio, detail)

    def _record(self, decisions: list[Decision], texts: Sequence[object]) -> None:
        try:
            with self._count_lock:
                self._counts.update(d.reason.value for d in decisions)
            if self.shadow is not None:
                self.shadow.append(decisions, texts)
        except BaseException as exc:  # noqa: BLE001 - bookkeeping never changes a route
            if not contained(exc):
                raise
            log.error("decision bookkeeping failed: %s", type(exc).__name__)

    def _tokenizer(self, e: Engine) -> Any:
        """This thread's tokenizer for the engine (built from the verified tokenizer.json)."""
        local = self._local
        if getattr(local, "engine", None) is not e:
            from tokenizers import Tokenizer

            local.tokenizer = Tokenizer.from_str(e.tokenizer_json)
            local.engine = e
        return local.tokenizer

    def _score(self, e: Engine, texts: list[str], workers: int = 1) -> list[Scored]:
        """Score prepared texts one ticket at a time (`score_ticket`), `workers` of them at
        once; with `timeout_s`, each ticket's segmentation, tokenization and model work share
        one budget (`runtime/budget.py`)."""

        def one(text: str) -> Scored:  # on this thread, or a worker's (its own tokenizer)
            try:
                tokenizer = self._tokenizer(e)
                over = window_overflow(tokenizer, text, e.spec.policy.max_windows)
                if over is not None:
                    return Scored(None, Reason.OVER_LENGTH_CAP, detail=over)
                return score_ticket(e.backend.logits, tokenizer, text, e.spec)
            except MemoryError:
                return Scored(None, Reason.MODEL_ERROR, detail="resource_exhausted: MemoryError")
            except BaseException as exc:  # noqa: BLE001 - this ticket alone goes to a person
                if not contained(exc):
                    raise
                log.exception("scoring fault (%s); the ticket goes to human review",
                              type(exc).__name__)
                return Scored(None, Reason.MODEL_ERROR,
                              detail=f"router_error: {type(exc).__name__}")

        if self.timeout_s is not None:
            return score_within_budget(self._worker_pool(), one, texts, self.timeout_s)
        if workers <= 1 or len(texts) <= 1:
            return [one(text) for text in texts]
        return map_in_order(one, texts, workers, self._worker_pool())

    def _worker_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._count_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1),
                                                    thread_name_prefix="intakegate-infer")
        return self._pool

    def _open_shadow(self, shadow_log: Any, keep_text: bool) -> Any:
        if shadow_log is None:
            return None
        import sqlite3

        from intakegate.runtime.shadow import ShadowLog, bundle_floors

        try:
            log_obj = shadow_log if isinstance(shadow_log, ShadowLog) else ShadowLog(
                shadow_log, keep_text)
        except (sqlite3.Error, OSError) as exc:
            raise ValueError(f"cannot open the shadow log {shadow_log}: {exc}") from None
        e = self._engine
        if e is not None:
            floors, source = bundle_floors(e.verified)
            log_obj.register_bundle({
                "manifest_sha256": e.manifest_sha256, "bundle_version": e.bundle_version,
                "dataset": e.verified.manifest.dataset, "bundle_dir": str(self.bundle_dir),
                "threshold": e.threshold, "floors": floors, "floors_source": source})
        return log_obj


def worker_count(workers: object) -> int:
    """Tickets scored at once: one per CPU core by default; a bad value means 1 (routing never
    raises for it)."""
    if workers is None:
        return cpu_workers()
    if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        return workers
    log.warning("route_batch: workers=%r is not a positive int; scoring one ticket at a time",
                workers)
    return 1


def _deciding_segment(e: Engine, s: Scored, prepared_text: str, raw: object,
                      with_text: bool) -> DecidingSegment | None:
    """The deciding segment with its span in the caller's own text (for highlighting)."""
    part = s.deciding
    if part is None or not isinstance(raw, str):
        return None
    start, end = raw_span(raw, prepared_text, e.spec.policy, part.segment.start,
                          part.segment.end)
    return DecidingSegment(s.decided_by or 0, part.segment.kind.value, start, end, part.score,
                           raw[start:end] if with_text else None)
