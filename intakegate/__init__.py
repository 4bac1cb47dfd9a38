"""intakegate: a local, fail-closed intake router for support tickets.

Importing this package is cheap: no torch, no transformers. Heavy parts live in
`intakegate.train` and `intakegate.export` behind extras.
"""

from intakegate.vocab import GateDecision, Route

__version__ = "0.1.0"
__all__ = ["GateDecision", "Route", "__version__"]
