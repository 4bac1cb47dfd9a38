"""JSONL in, JSONL out: the `route --input` file mode (`serve --stdio` is `runtime/stdio.py`).

One answer per input line, in input order, none lost: a line that is not valid UTF-8, not JSON,
not an object or has no `text` still gets a `human_review_now` answer with its reason. Output is
ASCII JSON, so any client can read it whatever the ticket contained. Nothing but answers goes to
stdout; logs go to stderr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from intakegate.errors import InputError
from intakegate.jsonio import loads_strict
from intakegate.routing import Reason
from intakegate.runtime.decision import Decision

log = logging.getLogger(__name__)
BATCH = 32
_MISSING = object()


@dataclass(frozen=True)
class Request:
    """One parsed input line: a ticket to route, a refusal, or (stdio) a control op."""

    ticket_id: Any
    text: object = None
    failure: tuple[Reason, str] | None = None
    op: str | None = None
    raw: object = None


def _wire_id(value: Any) -> Any:
    if value is None or isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=True)


def parse_line(line: bytes, lineno: int) -> Request:
    """Parse one JSONL line (`{"id": ..., "text": ...}`) without ever raising."""
    body = line.rstrip(b"\r\n")
    if not body.strip():
        return Request(None, failure=(Reason.INPUT_NOT_TEXT, f"blank_line: line {lineno}"),
                       raw=body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Request(None, failure=(Reason.INVALID_UNICODE,
                                      f"invalid_utf8: line {lineno} byte {exc.start}"), raw=body)
    try:
        obj = loads_strict(text)
    except InputError as exc:
        return Request(None, failure=(Reason.INPUT_NOT_TEXT,
                                      f"bad_json: line {lineno}: {str(exc)[:160]}"), raw=body)
    if not isinstance(obj, dict):
        return Request(None, failure=(Reason.INPUT_NOT_TEXT,
                                      f"bad_json: line {lineno} is not an object"), raw=body)
    ticket_id = _wire_id(obj.get("id"))
    op = obj.get("op")
    if op is not None and op != "route":
        return Request(ticket_id, op=str(op), raw=body)
    value = obj.get("text", _MISSING)
    if value is _MISSING:
        return Request(ticket_id, failure=(Reason.INPUT_NOT_TEXT,
                                           f"no_text: line {lineno} has no 'text' field"),
                       raw=body)
    return Request(ticket_id, text=value)


def dumps(obj: dict[str, Any]) -> str:
    """ASCII JSON; a value JSON cannot hold becomes null rather than a crash."""
    try:
        return json.dumps(obj, ensure_ascii=True, allow_nan=False)
    except Exception:  # noqa: BLE001 - ValueError, TypeError, RecursionError: keep the line
        safe = {k: (v if type(v) in (str, int, bool, type(None)) else None)
                for k, v in obj.items()}
        return json.dumps(safe, ensure_ascii=True)


def answer(router: Any, requests: list[Request]) -> list[Decision]:
    """Decisions for a batch of parsed ticket lines, in order."""
    todo = [(k, r) for k, r in enumerate(requests) if r.failure is None]
    out: list[Decision | None] = [None] * len(requests)
    if todo:
        routed = router.route_batch([r.text for _, r in todo], [r.ticket_id for _, r in todo])
        for (k, _), decision in zip(todo, routed):
            out[k] = decision
    for k, r in enumerate(requests):
        if r.failure is not None:
            out[k] = router.reject(r.failure[0], r.failure[1], r.ticket_id, r.raw)
    return [d for d in out if d is not None]


def route_lines(router: Any, lines: Iterable[bytes], write: Callable[[str], None],
                batch: int = BATCH) -> int:
    """Route JSONL ticket lines in batches; returns how many answers were written."""
    pending: list[Request] = []
    written = 0

    def flush() -> None:
        nonlocal written
        for decision in answer(router, pending):
            write(dumps(decision.to_wire()))
            written += 1
        pending.clear()

    for lineno, line in enumerate(lines, start=1):
        request = parse_line(line, lineno)
        if request.op is not None:
            request = Request(request.ticket_id,
                              failure=(Reason.INPUT_NOT_TEXT,
                                       f"bad_json: line {lineno}: op {request.op!r} is only for "
                                       f"serve --stdio"), raw=request.raw)
        pending.append(request)
        if len(pending) >= batch:
            flush()
    flush()
    return written
