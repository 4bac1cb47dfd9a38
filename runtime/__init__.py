"""The local router: numpy, onnxruntime and tokenizers only; torch only when asked for.

    from intakegate.runtime import Router
    router = Router.load("bundles/refund-intake/v2", artifact="onnx-int8", device="auto")
    decision = router.route("FastShip delivered after the return window closed.")

Importing this package never imports torch or transformers; onnxruntime is imported when a
router loads an ONNX artifact, after its telemetry files are switched off (privacy.py).
"""

from intakegate.runtime.privacy import quiet_libraries

quiet_libraries()  # before any runtime module can import onnxruntime (see privacy.py)

from intakegate.routing import Reason, admitted_by_pinned_bundle  # noqa: E402
from intakegate.runtime.decision import Decision, Device  # noqa: E402
from intakegate.runtime.live import LiveRouter  # noqa: E402
from intakegate.runtime.router import Router  # noqa: E402
from intakegate.vocab import Route  # noqa: E402

__all__ = ["Decision", "Device", "LiveRouter", "Reason", "Route", "Router",
           "admitted_by_pinned_bundle"]
