"""The local router: numpy, onnxruntime and tokenizers only; torch only when asked for.

    from intakegate.runtime import Router
    router = Router.load("bundles/refund-intake/v2", artifact="onnx-int8", device="auto")
    decision = router.route("FastShip delivered after the return window closed.")

Importing this package never imports torch or transformers; onnxruntime is imported when a
router loads an ONNX artifact.
"""

from intakegate.routing import Reason, admitted_by_pinned_bundle
from intakegate.runtime.decision import Decision, Device
from intakegate.runtime.live import LiveRouter
from intakegate.runtime.router import Router
from intakegate.vocab import Route

__all__ = ["Decision", "Device", "LiveRouter", "Reason", "Route", "Router",
           "admitted_by_pinned_bundle"]
