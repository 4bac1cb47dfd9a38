"""`LiveRouter`: one long-lived handle whose bundle can be reloaded without dropping a ticket.

A reload builds a complete new `Router` beside the old one and swaps a single reference only if
the new one is ready; in-flight calls keep the router they started with, so every decision comes
from exactly one bundle (model, tokenizer, threshold together). A failed reload keeps the
verified router serving and says so (the TF Serving / Triton rule). Before the first load
finishes, tickets get `human_review_now` / `model_unavailable` ("loading") at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from intakegate.bundle import Artifact
from intakegate.routing import Reason
from intakegate.runtime.decision import Decision, Device, input_digest
from intakegate.runtime.guard import contained, last_resort
from intakegate.runtime.router import Router
from intakegate.vocab import FALLBACK_ROUTE

log = logging.getLogger(__name__)


class LiveRouter:
    """A swappable router: `route` delegates to the current immutable `Router`."""

    def __init__(self, bundle: str | Path, artifact: str = Artifact.ONNX_INT8.value,
                 device: str = Device.AUTO.value, background: bool = False,
                 **options: Any) -> None:
        self.source = bundle
        self.artifact = Artifact(artifact).value
        self.device = Device(device).value
        shadow = options.get("shadow_log")
        if shadow is not None:
            from intakegate.runtime.shadow import ShadowLog

            if not isinstance(shadow, ShadowLog):
                shadow = ShadowLog(shadow, bool(options.pop("shadow_log_text", False)))
            options["shadow_log"] = shadow  # one log shared by every router this handle loads
        self.options = options
        self._router: Router | None = None
        self._lock = threading.Lock()
        # Why the last reload did not swap (reason, detail); None after a successful one.
        self.last_reload_failure: tuple[str | None, str | None] | None = None
        self.loaded = threading.Event()
        if background:
            threading.Thread(target=self._first_load, name="intakegate-load",
                             daemon=True).start()
        else:
            self._first_load()

    def _first_load(self) -> None:
        try:
            self.reload()
        finally:
            self.loaded.set()

    @property
    def current(self) -> Router | None:
        return self._router

    def reload(self, bundle: str | Path | None = None) -> bool:
        """Load `bundle` (default: the same source, e.g. a dataset's ACTIVE pointer) and swap
        it in if it is ready. Returns whether the new router serves now."""
        with self._lock:
            source = self.source if bundle is None else bundle
            new = Router(source, self.artifact, self.device, **self.options)
            old = self._router
            info = new.health()
            self.last_reload_failure = None if new.ready else (info["reason"], info["detail"])
            if new.ready or old is None or not old.ready:
                self._router = new
                if bundle is not None:
                    self.source = bundle
                return new.ready
            log.error("reload of %s failed (%s); still serving %s", source,
                      new.health()["detail"], old.bundle_version)
            return False

    # Every entry point below never raises (only KeyboardInterrupt goes on): see guard.py.

    def route(self, text: object, ticket_id: str | int | None = None) -> Decision:
        try:
            router = self._router
            if router is None:
                return self._loading(text, ticket_id)
            return router.route(text, ticket_id)
        except BaseException as exc:  # noqa: BLE001
            return last_resort(self, exc, 1)[0]

    def route_bytes(self, data: object, ticket_id: str | int | None = None) -> Decision:
        try:
            router = self._router
            if router is None:
                return self._loading(data, ticket_id)
            return router.route_bytes(data, ticket_id)
        except BaseException as exc:  # noqa: BLE001
            return last_resort(self, exc, 1)[0]

    def route_batch(self, texts: Iterable[object],
                    ticket_ids: Sequence[str | int | None] | None = None,
                    workers: int | None = None) -> list[Decision]:
        """`Router.route_batch` on the router serving now (`workers`: tickets at once)."""
        try:
            router = self._router
            if router is None:
                return self._loading_batch(texts, ticket_ids)
            return router.route_batch(texts, ticket_ids, workers=workers)
        except BaseException as exc:  # noqa: BLE001
            return last_resort(self, exc, None)

    def _loading_batch(self, texts: Iterable[object],
                       ticket_ids: Sequence[str | int | None] | None) -> list[Decision]:
        if isinstance(texts, (str, bytes, bytearray)):
            texts = [texts]
        try:
            items = list(texts)
        except BaseException as exc:  # noqa: BLE001 - an unreadable batch is one answer
            if not contained(exc):
                raise
            return [self._loading(None, None)]
        try:
            ids = list(ticket_ids) if ticket_ids is not None else [None] * len(items)
        except BaseException as exc:  # noqa: BLE001
            if not contained(exc):
                raise
            ids = []
        if len(ids) != len(items):
            ids = [None] * len(items)
        return [self._loading(t, i) for t, i in zip(items, ids)]

    def reject(self, reason: Reason, detail: str, ticket_id: str | int | None, raw: object
               ) -> Decision:
        try:
            router = self._router
            if router is None:
                return self._loading(raw, ticket_id)
            return router.reject(reason, detail, ticket_id, raw)
        except BaseException as exc:  # noqa: BLE001
            return last_resort(self, exc, 1)[0]

    def health(self) -> dict[str, Any]:
        router = self._router
        if router is None:
            return {"ready": False, "reason": Reason.MODEL_UNAVAILABLE.value,
                    "detail": "loading", "source": str(self.source)}
        return router.health()

    def _loading(self, raw: object, ticket_id: str | int | None) -> Decision:
        return Decision(FALLBACK_ROUTE, Reason.MODEL_UNAVAILABLE, None, None, None,
                        self.artifact, self.device, input_sha256=input_digest(raw),
                        ticket_id=ticket_id, detail="model_loading: the bundle is still "
                                                    "loading")
