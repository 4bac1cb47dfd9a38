"""The local router: numpy, onnxruntime and tokenizers only; torch only when asked for.

    from intakegate.runtime import Router
    router = Router.load("bundles/refund-intake/v2", artifact="onnx-int8", device="auto")
    decision = router.route("FastShip delivered after the return window closed.")

Importing this package never imports torch or transformers; onnxruntime is imported when a
router loads an ONNX artifact, after its telemetry files are switched off (privacy.py). The
public names load on first use (PEP 562), so `import intakegate.runtime` (and a client that
only wants `Decision`) does not pay for the router's imports at interpreter start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from intakegate.runtime.privacy import quiet_libraries

quiet_libraries()  # before any runtime module can import onnxruntime (see privacy.py)

if TYPE_CHECKING:
    from intakegate.routing import Reason, admitted_by_pinned_bundle
    from intakegate.runtime.decision import Decision, Device
    from intakegate.runtime.live import LiveRouter
    from intakegate.runtime.router import Router
    from intakegate.vocab import Route

_WHERE = {"Decision": "intakegate.runtime.decision", "Device": "intakegate.runtime.decision",
          "LiveRouter": "intakegate.runtime.live", "Reason": "intakegate.routing",
          "Route": "intakegate.vocab", "Router": "intakegate.runtime.router",
          "admitted_by_pinned_bundle": "intakegate.routing"}
__all__ = ["Decision", "Device", "LiveRouter", "Reason", "Route", "Router",
           "admitted_by_pinned_bundle"]  # a literal list, so linters see the names exported


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first asked for."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
