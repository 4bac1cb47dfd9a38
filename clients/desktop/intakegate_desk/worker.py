"""Routing off the UI thread: one `RoutingJob` (a QThread) per batch of work.

The job loads its tickets (a folder can hold thousands of files), routes them in chunks and
emits each chunk as it is done, so the window stays responsive and shows progress; the router
itself is thread-safe. `cancel()` stops after the current chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QThread, Signal

from intakegate_desk.session import Session
from intakegate_desk.tickets import Loaded

CHUNK = 32


class RoutingJob(QThread):
    loaded = Signal(object)          # Loaded: tickets and the problems found while reading
    progress = Signal(int, int)      # done, total
    routed = Signal(object)          # list[Routed], one chunk, in order
    finished_in = Signal(float)      # seconds from start to the last decision
    failed = Signal(str)

    def __init__(self, session: Session, source: Callable[[], Loaded], parent: object = None
                 ) -> None:
        super().__init__(parent)  # type: ignore[arg-type]
        self.session = session
        self.source = source
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def run(self) -> None:
        start = time.perf_counter()
        try:
            batch = self.source()
        except Exception as exc:  # noqa: BLE001 - reported to the window, never raised
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        self.loaded.emit(batch)
        tickets = list(batch.tickets)
        total = len(tickets)
        self.progress.emit(0, total)
        for k in range(0, total, CHUNK):
            if self._cancelled:
                break
            chunk = self.session.route(tickets[k:k + CHUNK])
            self.routed.emit(chunk)
            self.progress.emit(min(k + CHUNK, total), total)
        self.finished_in.emit(time.perf_counter() - start)
