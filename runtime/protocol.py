"""Protocol v1 of `intakegate serve --stdio`: the typed messages and the one line parser.

Every line a client writes parses, without raising, into exactly one of `RouteRequest`,
`ControlRequest` or `BadRequest`; every line the server writes is one of the frozen message
types below, rendered by `to_json()` as ASCII JSON that `intakegate/schemas/stdio-v1.json`
validates. `docs/stdio-protocol.md` is the prose version; the tests hold the two together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from intakegate.errors import InputError
from intakegate.jsonio import loads_strict
from intakegate.runtime.decision import Decision

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20
MAX_TICKETS = 1000
WireId = Union[str, int, None]
_MISSING = object()


class Op(str, Enum):
    ROUTE = "route"
    HEALTH = "health"
    RELOAD = "reload"
    SHUTDOWN = "shutdown"


class ErrorCode(str, Enum):
    """Why a line got an error reply instead of the answer it asked for."""

    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_UTF8 = "invalid_utf8"
    LINE_TOO_LONG = "line_too_long"
    BLANK_LINE = "blank_line"
    UNKNOWN_OP = "unknown_op"
    BAD_REQUEST = "bad_request"
    TOO_MANY_TICKETS = "too_many_tickets"
    INTERNAL = "internal"


@dataclass(frozen=True)
class Ticket:
    """One ticket of a route request; `text` is whatever JSON value came (the router refuses
    anything that is not text). `has_text` is False when the field was absent."""

    id: WireId
    text: object
    has_text: bool = True


@dataclass(frozen=True)
class RouteRequest:
    """`route` with `text` (one ticket, a flat reply) or `tickets` (a list, `decisions`)."""

    id: WireId
    tickets: tuple[Ticket, ...]
    batch: bool
    line: int


@dataclass(frozen=True)
class ControlRequest:
    op: Op
    id: WireId
    line: int
    bundle: str | None = None


@dataclass(frozen=True)
class BadRequest:
    """A line that cannot be answered as asked; it still gets exactly one error reply."""

    id: WireId
    op: str | None
    code: ErrorCode
    message: str
    line: int


Request = Union[RouteRequest, ControlRequest, BadRequest]


def _bad(code: ErrorCode, message: str, line: int, rid: WireId = None,
         op: str | None = None) -> BadRequest:
    return BadRequest(rid, op, code, f"line {line}: {message}"[:500], line)


def _valid_id(value: object) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, int)
                                                       and not isinstance(value, bool))


def parse_request(body: bytes, line: int) -> Request:
    """Parse one line (without its newline). Never raises."""
    if not body.strip():
        return _bad(ErrorCode.BLANK_LINE, "blank line", line)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _bad(ErrorCode.INVALID_UTF8, f"not UTF-8 (byte {exc.start})", line)
    try:
        obj = loads_strict(text)
    except InputError as exc:
        return _bad(ErrorCode.BAD_JSON, f"not JSON: {str(exc)[:160]}", line)
    except RecursionError:
        return _bad(ErrorCode.BAD_JSON, "not JSON: nested too deeply", line)
    if not isinstance(obj, dict):
        return _bad(ErrorCode.NOT_AN_OBJECT, f"a JSON {type(obj).__name__}, not an object", line)
    rid = obj.get("id")
    op = obj.get("op", Op.ROUTE.value)
    if not isinstance(op, str):
        return _bad(ErrorCode.BAD_REQUEST, "field 'op' must be a string", line,
                    rid if _valid_id(rid) else None)
    if not _valid_id(rid):
        return _bad(ErrorCode.BAD_REQUEST, "field 'id' must be a string, an integer or null",
                    line, None, op)
    try:
        kind = Op(op)
    except ValueError:
        return _bad(ErrorCode.UNKNOWN_OP, f"unknown op {op[:40]!r}; use route, health, reload "
                                          f"or shutdown", line, rid, op)
    if kind is Op.ROUTE:
        return _route_request(obj, rid, line)
    bundle = obj.get("bundle")
    if kind is Op.RELOAD and bundle is not None and not isinstance(bundle, str):
        return _bad(ErrorCode.BAD_REQUEST, "field 'bundle' must be a string", line, rid, op)
    return ControlRequest(kind, rid, line, bundle if kind is Op.RELOAD else None)


def _route_request(obj: dict[str, Any], rid: WireId, line: int) -> Request:
    if "tickets" not in obj:
        value = obj.get("text", _MISSING)
        return RouteRequest(rid, (Ticket(rid, None if value is _MISSING else value,
                                         value is not _MISSING),), False, line)
    if "text" in obj:
        return _bad(ErrorCode.BAD_REQUEST, "give 'text' or 'tickets', not both", line, rid,
                    "route")
    items = obj["tickets"]
    if not isinstance(items, list):
        return _bad(ErrorCode.BAD_REQUEST, "field 'tickets' must be a list", line, rid, "route")
    if len(items) > MAX_TICKETS:
        return _bad(ErrorCode.TOO_MANY_TICKETS, f"{len(items)} tickets; at most {MAX_TICKETS} "
                                                f"per request", line, rid, "route")
    tickets = []
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            return _bad(ErrorCode.BAD_REQUEST, f"tickets[{k}] must be an object", line, rid,
                        "route")
        tid = item.get("id")
        if not _valid_id(tid):
            return _bad(ErrorCode.BAD_REQUEST, f"tickets[{k}] field 'id' must be a string, an "
                                               f"integer or null", line, rid, "route")
        value = item.get("text", _MISSING)
        tickets.append(Ticket(tid, None if value is _MISSING else value, value is not _MISSING))
    return RouteRequest(rid, tuple(tickets), True, line)


# ---------------------------------------------------------------------------------------------
# Server messages. Each renders to one line; `op` and `id` are always there.


def dumps(obj: dict[str, Any]) -> str:
    """ASCII JSON; a value JSON cannot hold (NaN) becomes null rather than a crash."""
    try:
        return json.dumps(obj, ensure_ascii=True, allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(_json_safe(obj), ensure_ascii=True, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class ReadyEvent:
    """The first line: what serves (or why nothing does, and where the bundle was looked for)."""

    ready: bool
    bundle_version: str | None
    manifest_sha256: str | None
    artifact: str
    device: str
    threshold: float | None
    reason: str | None
    detail: str | None
    workers: int
    max_line_bytes: int
    version: str
    looked_in: tuple[str, ...] = ()
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": "ready", "id": None, "protocol": PROTOCOL_VERSION,
                               "ready": self.ready, "bundle_version": self.bundle_version,
                               "manifest_sha256": self.manifest_sha256,
                               "artifact": self.artifact, "device": self.device,
                               "threshold": self.threshold, "reason": self.reason,
                               "detail": self.detail, "workers": self.workers,
                               "max_line_bytes": self.max_line_bytes,
                               "intakegate_version": self.version}
        if self.looked_in:
            out["looked_in"] = list(self.looked_in)
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass(frozen=True)
class RouteReply:
    """One ticket: the decision's wire fields, flat, with `op` and the request id."""

    id: WireId
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        return {"op": "route", **self.decision.to_wire(), "id": self.id}


@dataclass(frozen=True)
class RouteBatchReply:
    id: WireId
    decisions: tuple[Decision, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": "route", "id": self.id, "decisions": [d.to_wire() for d in self.decisions]}


@dataclass(frozen=True)
class Counters:
    """Since the server started; a reload does not reset them."""

    requests: int
    decisions: dict[str, int]
    routes: dict[str, int]
    errors: dict[str, int]
    reloads: int
    reload_failures: int
    uptime_s: float


@dataclass(frozen=True)
class HealthReply:
    id: WireId
    router: dict[str, Any]
    counters: Counters

    def to_json(self) -> dict[str, Any]:
        c = self.counters
        keep = ("ready", "reason", "detail", "source", "bundle_dir", "bundle_version",
                "manifest_sha256", "threshold", "artifact", "device", "providers", "threads",
                "selftest", "measurement_only", "shadow_log_failures")
        out: dict[str, Any] = {"op": "health", "id": self.id}
        out.update({k: self.router.get(k) for k in keep})
        out.update({"requests": c.requests, "decisions": c.decisions, "routes": c.routes,
                    "errors": c.errors, "reloads": c.reloads,
                    "reload_failures": c.reload_failures, "uptime_s": round(c.uptime_s, 3)})
        return out


@dataclass(frozen=True)
class ReloadReply:
    """`ok` and, on failure, the new bundle's `reason`/`detail`; the rest says what serves now
    (on failure: the old bundle, still serving)."""

    id: WireId
    ok: bool
    reason: str | None
    detail: str | None
    router: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        r = self.router
        return {"op": "reload", "id": self.id, "ok": self.ok, "reason": self.reason,
                "detail": self.detail, "ready": bool(r.get("ready")),
                "bundle_version": r.get("bundle_version"),
                "manifest_sha256": r.get("manifest_sha256"), "artifact": r.get("artifact"),
                "device": r.get("device"), "threshold": r.get("threshold")}


@dataclass(frozen=True)
class ShutdownReply:
    id: WireId
    answered: int

    def to_json(self) -> dict[str, Any]:
        return {"op": "shutdown", "id": self.id, "ok": True, "answered": self.answered}


@dataclass(frozen=True)
class ErrorReply:
    """A request that could not be answered as asked. `op` is the request's op when known."""

    id: WireId
    op: str | None
    code: ErrorCode
    message: str
    line: int | None

    def to_json(self) -> dict[str, Any]:
        return {"op": "error", "id": self.id,
                "error": {"code": self.code.value, "message": self.message,
                          "request_op": self.op, "line": self.line}}


@dataclass(frozen=True)
class FatalEvent:
    """The server's last line when it must stop (it then exits non-zero)."""

    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"op": "fatal", "id": None, "error": {"code": self.code, "message": self.message}}


Message = Union[ReadyEvent, RouteReply, RouteBatchReply, HealthReply, ReloadReply, ShutdownReply,
                ErrorReply, FatalEvent]


def load_schema() -> dict[str, Any]:
    """The protocol's JSON Schema, shipped in the package."""
    from importlib.resources import files

    return json.loads(files("intakegate").joinpath("schemas/stdio-v1.json").read_text("utf-8"))
