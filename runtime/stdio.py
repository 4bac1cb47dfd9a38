"""The `serve --stdio` loop (protocol v1): a ready event, then exactly one reply per request.

Why it is built this way:
- One reader (the calling thread) and `workers` handlers. With one worker the reader answers
  inline, so replies come in request order; with more, replies come as they finish, tagged by id.
- Back-pressure instead of buffering: at most `2 * workers` requests are in flight, and a reply
  is written (and flushed) before its slot frees. A client that stops reading stdout fills the
  pipe, the server blocks, stops reading stdin, and the client's own writes block. Memory stays
  flat however many requests are pipelined.
- A line longer than `max_line_bytes` is never held whole: the rest is skipped up to the
  newline and the line gets a `line_too_long` error.
- Nothing here raises to the client: a handler fault answers `human_review_now` (route) or an
  `internal` error (control); a fault of the loop itself writes one `fatal` event and exits 1.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from intakegate import __version__
from intakegate.routing import Reason
from intakegate.runtime.decision import Decision, input_digest
from intakegate.runtime.protocol import (
    MAX_LINE_BYTES,
    BadRequest,
    ControlRequest,
    Counters,
    ErrorCode,
    ErrorReply,
    FatalEvent,
    HealthReply,
    Message,
    Op,
    ReadyEvent,
    ReloadReply,
    Request,
    RouteBatchReply,
    RouteReply,
    RouteRequest,
    ShutdownReply,
    WireId,
    dumps,
    parse_request,
)
from intakegate.vocab import FALLBACK_ROUTE

log = logging.getLogger(__name__)
_SKIP_CHUNK = 1 << 16


class OutputClosed(Exception):
    """stdout is gone (the client closed its end); nothing more can be answered."""


class Output:
    """Writes one message per line, flushed, under a lock (handlers share it)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.closed = False
        self.written = 0

    def send(self, message: Message) -> None:
        data = (dumps(message.to_json()) + "\n").encode("ascii")
        with self._lock:
            if self.closed:
                raise OutputClosed
            try:
                self._stream.write(data)
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError, ValueError, OSError) as exc:
                self.closed = True
                raise OutputClosed from exc
            self.written += 1


@dataclass(frozen=True)
class ServeOptions:
    workers: int = 1
    max_line_bytes: int = MAX_LINE_BYTES
    looked_in: tuple[str, ...] = ()
    hint: str | None = None


class Tally:
    """Counters since start; a reload keeps them (the router's own reset with each bundle)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.requests = 0
        self.decisions: Counter[str] = Counter()
        self.routes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.reloads = 0
        self.reload_failures = 0

    def request(self) -> None:
        with self._lock:
            self.requests += 1

    def decided(self, decisions: tuple[Decision, ...]) -> None:
        with self._lock:
            self.decisions.update(d.reason.value for d in decisions)
            self.routes.update(d.route.value for d in decisions)

    def error(self, code: ErrorCode) -> None:
        with self._lock:
            self.errors[code.value] += 1

    def reloaded(self, ok: bool) -> None:
        with self._lock:
            self.reloads += 1
            self.reload_failures += 0 if ok else 1

    def snapshot(self) -> Counters:
        with self._lock:
            return Counters(self.requests, dict(self.decisions), dict(self.routes),
                            dict(self.errors), self.reloads, self.reload_failures,
                            time.monotonic() - self.started)


def read_lines(stdin: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, body without newline), or None as body for an over-long line."""
    lineno = 0
    while True:
        chunk = stdin.readline(limit + 1)
        if not chunk:
            return
        lineno += 1
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = stdin.readline(_SKIP_CHUNK)
            yield lineno, None
            continue
        yield lineno, chunk.rstrip(b"\r\n")


class StdioServer:
    """One server over a `LiveRouter`-like object (route_batch, reject, reload, health)."""

    def __init__(self, live: Any, stdin: BinaryIO, stdout: BinaryIO,
                 options: ServeOptions = ServeOptions()) -> None:
        if options.workers < 1:
            raise ValueError("workers must be at least 1")
        self.live = live
        self.stdin = stdin
        self.out = Output(stdout)
        self.options = options
        self.tally = Tally()
        self._slots = threading.BoundedSemaphore(2 * options.workers)

    # -----------------------------------------------------------------------------------------

    def ready_event(self) -> ReadyEvent:
        h = self.live.health()
        return ReadyEvent(bool(h.get("ready")), h.get("bundle_version"),
                          h.get("manifest_sha256"), str(h.get("artifact")),
                          str(h.get("device")), h.get("threshold"), h.get("reason"),
                          h.get("detail"), self.options.workers, self.options.max_line_bytes,
                          __version__,
                          () if h.get("ready") else self.options.looked_in,
                          None if h.get("ready") else self.options.hint)

    def run(self) -> int:
        """Serve until stdin closes or `shutdown`; 0 when every request was answered."""
        pool = (ThreadPoolExecutor(self.options.workers, thread_name_prefix="intakegate-stdio")
                if self.options.workers > 1 else None)
        try:
            self.out.send(self.ready_event())
            for lineno, body in read_lines(self.stdin, self.options.max_line_bytes):
                if self.out.closed:
                    raise OutputClosed
                self.tally.request()
                request = (parse_request(body, lineno) if body is not None else
                           BadRequest(None, None, ErrorCode.LINE_TOO_LONG,
                                      f"line {lineno}: longer than {self.options.max_line_bytes} "
                                      f"bytes; skipped", lineno))
                if isinstance(request, ControlRequest) and request.op is Op.SHUTDOWN:
                    if pool is not None:
                        pool.shutdown(wait=True)
                        pool = None
                    self.out.send(ShutdownReply(request.id, self.out.written - 1))
                    return 0
                if pool is None:
                    self.handle(request)
                else:
                    self._slots.acquire()
                    future = pool.submit(self.handle, request)
                    future.add_done_callback(lambda _f: self._slots.release())
            if pool is not None:
                pool.shutdown(wait=True)
                pool = None
            return 0 if not self.out.closed else 1
        except OutputClosed:
            log.error("stdout closed by the client; stopping")
            return 1
        except Exception as exc:  # noqa: BLE001 - the loop's own fault: one fatal event, exit 1
            log.exception("stdio loop failed")
            try:
                self.out.send(FatalEvent("internal", f"{type(exc).__name__}: {str(exc)[:300]}"))
            except OutputClosed:
                pass
            return 1
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=False)

    def handle(self, request: Request) -> None:
        """Answer one request; exactly one message is sent (or stdout is gone)."""
        try:
            reply = self._reply(request)
        except BaseException as exc:  # noqa: BLE001 - every request gets its one reply
            if isinstance(exc, KeyboardInterrupt):
                raise  # the top level: a person stopping the server
            log.error("stdio request failed: %s", type(exc).__name__)
            reply = self._failed(request, exc)
        try:
            self.out.send(reply)
        except OutputClosed:
            if threading.current_thread() is threading.main_thread():
                raise

    def _reply(self, request: Request) -> Message:
        if isinstance(request, BadRequest):
            self.tally.error(request.code)
            return ErrorReply(request.id, request.op, request.code, request.message,
                              request.line)
        if isinstance(request, RouteRequest):
            decisions = tuple(self._route(request))
            self.tally.decided(decisions)
            if request.batch:
                return RouteBatchReply(request.id, decisions)
            return RouteReply(request.id, decisions[0])
        if request.op is Op.HEALTH:
            return HealthReply(request.id, self.live.health(), self.tally.snapshot())
        ok = bool(self.live.reload(request.bundle))
        self.tally.reloaded(ok)
        failure = getattr(self.live, "last_reload_failure", None) or (None, None)
        reason, detail = (None, None) if ok else failure
        return ReloadReply(request.id, ok, reason, detail, self.live.health())

    def _route(self, request: RouteRequest) -> list[Decision]:
        out: list[Decision | None] = [None] * len(request.tickets)
        todo = [(k, t) for k, t in enumerate(request.tickets) if t.has_text]
        if todo:
            routed = self.live.route_batch([t.text for _, t in todo], [t.id for _, t in todo])
            for (k, _), decision in zip(todo, routed):
                out[k] = decision
        for k, t in enumerate(request.tickets):
            if not t.has_text:
                out[k] = self.live.reject(Reason.INPUT_NOT_TEXT,
                                          f"no_text: line {request.line} has no 'text' field",
                                          t.id, None)
        return [d if d is not None else self._fail_closed(t.id, "no decision")
                for d, t in zip(out, request.tickets)]

    def _fail_closed(self, ticket_id: WireId, why: str, raw: object = None) -> Decision:
        h: dict[str, Any] = {}
        try:
            h = self.live.health()
        except Exception:  # noqa: BLE001 - the fallback needs no health to be safe
            pass
        return Decision(FALLBACK_ROUTE, Reason.MODEL_ERROR, None, None, None,
                        str(h.get("artifact", "unknown")), str(h.get("device", "unknown")),
                        input_sha256=input_digest(raw), ticket_id=ticket_id,
                        detail=f"router_error: {why}"[:300])

    def _failed(self, request: Request, exc: Exception) -> Message:
        why = type(exc).__name__
        if isinstance(request, RouteRequest):
            decisions = tuple(self._fail_closed(t.id, why) for t in request.tickets)
            self.tally.decided(decisions)
            if request.batch:
                return RouteBatchReply(request.id, decisions)
            return RouteReply(request.id, decisions[0])
        self.tally.error(ErrorCode.INTERNAL)
        op = request.op.value if isinstance(request, ControlRequest) else request.op
        return ErrorReply(request.id, op, ErrorCode.INTERNAL, f"{why}: {str(exc)[:300]}",
                          request.line)
