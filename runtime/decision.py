"""The router's fixed vocabularies and its one output, the route record (`Decision`).

A `Decision` is what leaves the router: the route, one reason from the product vocabulary, and
the provenance a downstream agent needs to decide whether to admit it (bundle version and
manifest digest). It never carries the ticket text; `input_sha256` identifies the input.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from intakegate.routing import Reason
from intakegate.vocab import FALLBACK_ROUTE, Route

# The fields a JSONL consumer gets (`intakegate route --input`, `intakegate serve --stdio`).
# The seven, plus the provenance the downstream agent pins and the sub-code.
WIRE_FIELDS = ("id", "route", "reason", "score", "threshold", "bundle_version", "artifact",
               "manifest_sha256", "device", "windows", "segment", "detail")


class Device(str, Enum):
    """Where the model runs. `auto` picks the best available and the decision says which."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


@dataclass(frozen=True)
class DecidingSegment:
    """The part of a ticket whose score decided the route, so a client can highlight it.

    `start`/`end` are code-point offsets into the ticket text exactly as the caller gave it
    (`text[start:end]`); `kind` is `whole`, `sentence` or `window`; `text` is filled only when
    the caller asks for ticket content (`Router.route(..., with_text=True)`).
    """

    index: int
    kind: str
    start: int
    end: int
    score: float
    text: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "kind": self.kind, "start": self.start,
                               "end": self.end, "score": self.score}
        if self.text is not None:
            out["text"] = self.text
        return out


@dataclass(frozen=True)
class Decision:
    """One route record. `route` is always one of the two routes, `reason` one Reason.

    `detail` starts with a stable sub-code (e.g. ``bundle_tampered:``, ``selftest_mismatch:``,
    ``token_id_out_of_range``) that narrows the reason for an operator; it never changes the
    route. `max_window` is the index of the riskiest window of a long ticket; `segment` names
    the segment (sentence, window or the whole ticket) whose score decided.
    """

    route: Route
    reason: Reason
    score: float | None
    threshold: float | None
    bundle_version: str | None
    artifact: str
    device: str
    manifest_sha256: str | None = None
    providers: tuple[str, ...] = ()
    windows: int = 0
    max_window: int | None = None
    input_sha256: str | None = None
    ticket_id: str | int | None = None
    unk_ratio: float | None = None
    detail: str = ""
    segment: DecidingSegment | None = None

    def to_record(self) -> dict[str, Any]:
        """Every field, JSON-ready (enums as their values)."""
        out = asdict(self)
        out["route"] = self.route.value
        out["reason"] = self.reason.value
        out["providers"] = list(self.providers)
        out["segment"] = None if self.segment is None else self.segment.to_json()
        return out

    def to_wire(self) -> dict[str, Any]:
        """The JSONL answer for one ticket, with `id` first."""
        record = self.to_record()
        record["id"] = self.ticket_id
        return {name: record[name] for name in WIRE_FIELDS}


def input_digest(value: object) -> str | None:
    """sha256 of the raw input as received: text (surrogates kept) or bytes; else None.

    By exact type and through the base methods, so no method of a caller's subclass runs.
    """
    kind = type(value)
    if issubclass(kind, str):
        return hashlib.sha256(str.encode(value, "utf-8", "surrogatepass")).hexdigest()  # type: ignore[arg-type]
    if issubclass(kind, (bytes, bytearray, memoryview)):
        return hashlib.sha256(memoryview(value).tobytes()).hexdigest()  # type: ignore[arg-type]
    return None


def is_safe_agent_decision(d: Decision) -> bool:
    """The only shape of decision allowed to name the agent: a valid score below threshold."""
    return (d.route is Route.GUARDED_AGENT and d.reason is Reason.BELOW_THRESHOLD
            and d.score is not None and d.threshold is not None
            and 0.0 <= d.score < d.threshold)


__all__ = ["DecidingSegment", "Decision", "Device", "FALLBACK_ROUTE", "WIRE_FIELDS", "input_digest",
           "is_safe_agent_decision"]
