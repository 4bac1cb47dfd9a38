"""How a load refuses: the reason every ticket will carry, and the measurement-only notes.

Why a module of its own: resolution, binding, backend construction and the self-test all refuse
the same way, and the router maps the same exceptions to fail-closed mode.
"""

from __future__ import annotations

from intakegate.bundle import BundleError
from intakegate.routing import Reason


class HeldNotes:
    """Where a measurement-only load records the refusals it let through.

    The default load raises `LoadRefused(artifact_held)` at the first of them; a load with
    `allow_held=True` (only `intakegate bench` asks for it, to time held artifacts) notes each
    one instead, and the router then labels every decision with them and never admits a ticket.
    """

    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.notes: list[str] = []

    def held(self, detail: str) -> None:
        """Refuse (default) or, in measurement-only mode, remember why this would be refused."""
        if not self.allow:
            raise LoadRefused(Reason.ARTIFACT_HELD, detail)
        self.notes.append(detail)


class LoadRefused(Exception):
    """The bundle or artifact cannot serve; `reason` is what every ticket will carry."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


def integrity_reason(exc: BundleError, artifact_path: str | None = None) -> LoadRefused:
    """Map a bundle error to the product vocabulary, keeping its code as the sub-code."""
    if exc.code == "model_unavailable":
        return LoadRefused(Reason.MODEL_UNAVAILABLE, str(exc))
    if exc.code == "artifact_held":
        return LoadRefused(Reason.ARTIFACT_HELD, str(exc))
    if (exc.code == "bundle_missing_file" and artifact_path and exc.path
            and (exc.path == artifact_path or exc.path.startswith(artifact_path + "/"))):
        return LoadRefused(Reason.MODEL_UNAVAILABLE, f"model_missing: {exc}")
    return LoadRefused(Reason.BUNDLE_INTEGRITY, str(exc))
