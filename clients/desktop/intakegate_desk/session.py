"""The client's one handle on the router: a loaded `Router`, or none, and what to show about it.

Fail-closed is the default state: with no bundle, a held artifact or a tampered bundle, every
ticket is still answered, `human_review_now` with the reason, and `BundleInfo.fail_closed` tells
the window to say so plainly. As defence in depth the client shows `guarded_agent` only for the
one decision shape the router itself allows (a valid score below the threshold).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from intakegate.bundle.root import resolve_root
from intakegate.routing import Reason
from intakegate.runtime.decision import Decision, input_digest, is_safe_agent_decision
from intakegate.vocab import FALLBACK_ROUTE, Route
from intakegate_desk.tickets import Ticket

NO_BUNDLE = "no_bundle: no bundle is open (File > Open bundle, or --bundle)"


def shown_path(path: str | None) -> str:
    """`path` without the machine's layout where a shorter form says the same."""
    if not path:
        return "-"
    resolved = Path(path).resolve()
    for base, prefix in ((Path.cwd().resolve(), ""), (Path.home().resolve(), "~/")):
        if base == Path(base.anchor):  # relative to the filesystem root says nothing shorter
            continue
        try:
            return prefix + str(resolved.relative_to(base))
        except ValueError:
            continue
    return str(path)


@dataclass(frozen=True)
class BundleInfo:
    """What the status bar shows, always: provenance when ready, the reason when not."""

    ready: bool
    source: str | None
    bundle_version: str | None
    manifest_sha256: str | None
    artifact: str
    device: str
    threshold: float | None
    reason: str | None
    detail: str | None
    selftest: str | None
    decisions: dict[str, int]

    @property
    def fail_closed(self) -> bool:
        return not self.ready

    @property
    def shown_source(self) -> str:
        """The bundle folder as a person reads it: relative to the working folder when inside
        it, under `~` when inside the home folder, else as given."""
        return shown_path(self.source)

    def headline(self) -> str:
        if self.ready:
            return (f"{self.bundle_version}  ·  manifest {(self.manifest_sha256 or '')[:12]}  ·  "
                    f"{self.artifact} on {self.device}  ·  threshold {self.threshold:.4f}")
        return (f"FAIL-CLOSED: {self.reason}. Every ticket is marked for a person. "
                f"{self.detail or ''}").strip()


@dataclass(frozen=True)
class Routed:
    """A ticket and its decision, as the queue and the export hold them."""

    ticket: Ticket
    decision: Decision


class Session:
    """Owns the router (or its absence). Thread-safe to route from a worker thread."""

    def __init__(self, router: Any | None, artifact: str = "onnx-int8", device: str = "auto"
                 ) -> None:
        self.router = router
        self.artifact = artifact
        self.device = device
        self._lock = threading.Lock()
        self._routes: Counter[str] = Counter()  # what this window showed, per route

    @classmethod
    def open(cls, bundle: str | Path | None, artifact: str = "onnx-int8", device: str = "auto",
             bundles_dir: str | Path | None = None) -> Session:
        """Load a bundle (directory or dataset name); None gives the no-bundle state."""
        if bundle is None or str(bundle) == "":
            return cls(None, artifact, device)
        from intakegate.runtime import Router

        root = resolve_root(bundles_dir)
        return cls(Router.load(bundle, artifact=artifact, device=device,
                               bundles_root=root.path), artifact, device)

    def info(self) -> BundleInfo:
        if self.router is None:
            return BundleInfo(False, None, None, None, self.artifact, self.device, None,
                              Reason.MODEL_UNAVAILABLE.value, NO_BUNDLE, None, self.routes())
        h = self.router.health()
        return BundleInfo(bool(h["ready"]), h.get("source"), h.get("bundle_version"),
                          h.get("manifest_sha256"), str(h.get("artifact")),
                          str(h.get("device")), h.get("threshold"), h.get("reason"),
                          h.get("detail"), h.get("selftest"), self.routes())

    def route(self, tickets: Sequence[Ticket]) -> list[Routed]:
        """Decisions in ticket order; never raises (a fault is a decision for a person)."""
        if not tickets:
            return []
        try:
            if self.router is None:
                decisions = [self._fallback(t, Reason.MODEL_UNAVAILABLE, NO_BUNDLE)
                             for t in tickets]
            else:
                decisions = self._route_router(tickets)
        except Exception as exc:  # noqa: BLE001 - the client fails closed too
            decisions = [self._fallback(t, Reason.MODEL_ERROR,
                                        f"client_error: {type(exc).__name__}") for t in tickets]
        out = [Routed(t, guard(d)) for t, d in zip(tickets, decisions)]
        with self._lock:
            self._routes.update(r.decision.route.value for r in out)
        return out

    def routes(self) -> dict[str, int]:
        """Decisions per route since this session opened (shown beside the bundle)."""
        with self._lock:
            return dict(self._routes)

    def _route_router(self, tickets: Sequence[Ticket]) -> list[Decision]:
        """Text in batches; raw bytes (a file that is not UTF-8) through `route_bytes`, so the
        reason says invalid_unicode rather than input_not_text."""
        out: list[Decision | None] = [None] * len(tickets)
        text = [k for k, t in enumerate(tickets) if not isinstance(t.text, bytes)]
        routed = self.router.route_batch([tickets[k].text for k in text],
                                         [tickets[k].id for k in text])
        if len(routed) != len(text):
            raise RuntimeError("router returned a different number of decisions")
        for k, d in zip(text, routed):
            out[k] = d
        for k, t in enumerate(tickets):
            if isinstance(t.text, bytes):
                out[k] = self.router.route_bytes(t.text, t.id)
        return [d if d is not None else self._fallback(t, Reason.MODEL_ERROR, "client_error")
                for d, t in zip(out, tickets)]

    def _fallback(self, ticket: Ticket, reason: Reason, detail: str) -> Decision:
        return Decision(FALLBACK_ROUTE, reason, None, None, None, self.artifact, self.device,
                        input_sha256=input_digest(ticket.text), ticket_id=ticket.id,
                        detail=detail)

    def close(self) -> None:
        if self.router is not None:
            self.router.close()


def guard(decision: Decision) -> Decision:
    """Show `guarded_agent` only for a safe agent decision; anything else goes to a person."""
    if decision.route is Route.GUARDED_AGENT and not is_safe_agent_decision(decision):
        return replace(decision, route=FALLBACK_ROUTE, reason=Reason.MODEL_ERROR,
                       detail="client_guard: unsafe agent decision blocked")
    return decision
