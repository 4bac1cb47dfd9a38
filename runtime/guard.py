"""Nothing escapes the routing API: the last line of defence behind every public entry point.

The router already turns every fault it knows into a per-ticket `human_review_now`; this catches
what it does not know, `BaseException` subclasses included (a backend calling `sys.exit`, a
`GeneratorExit`, a library's own BaseException). Only `KeyboardInterrupt` goes on, so a person
can still stop the process. The fallback decision built here touches neither the input nor the
engine: nothing that just failed can fail again while refusing.
"""

from __future__ import annotations

import logging
from typing import Any

from intakegate.routing import Reason
from intakegate.runtime.decision import Decision
from intakegate.vocab import FALLBACK_ROUTE

log = logging.getLogger(__name__)


def contained(exc: BaseException) -> bool:
    """Whether the router swallows this exception (everything but KeyboardInterrupt)."""
    return not isinstance(exc, KeyboardInterrupt)


def last_resort(owner: Any, exc: BaseException, n: int | None) -> list[Decision]:
    """`n` (default 1) human_review_now decisions for a call that failed as a whole; re-raises
    KeyboardInterrupt."""
    if not contained(exc):
        raise exc
    try:
        log.error("routing API fault (%s); sent to human review", type(exc).__name__)
    except BaseException:  # noqa: BLE001 - logging must not turn a refusal into a raise
        pass
    artifact = getattr(owner, "artifact", None)
    device = getattr(owner, "requested_device", None) or getattr(owner, "device", None)
    return [Decision(FALLBACK_ROUTE, Reason.MODEL_ERROR, None, None, None,
                     artifact if isinstance(artifact, str) else None,
                     device if isinstance(device, str) else None,
                     detail=f"router_error: {type(exc).__name__}") for _ in range(n or 1)]

