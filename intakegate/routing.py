"""The fail-closed routing rule: one function turns (text, score, threshold) into a route.

The route starts as the fallback (`human_review_now`) and only the success branch, a valid score
strictly below the threshold, may change it. There is no path from an error to the agent.
"""

from __future__ import annotations

from enum import Enum

from intakegate.scoring.maths import valid_score
from intakegate.vocab import FALLBACK_ROUTE, Route


class Reason(str, Enum):
    """Why a ticket got its route. One reason per decision."""

    THRESHOLD = "threshold"
    BELOW_THRESHOLD = "below_threshold"
    EMPTY_TEXT = "empty_text"
    INPUT_NOT_TEXT = "input_not_text"
    INVALID_UNICODE = "invalid_unicode"
    OBFUSCATION = "obfuscation_detected"
    OVER_LENGTH_CAP = "over_length_cap"
    MODEL_UNAVAILABLE = "model_unavailable"
    ARTIFACT_HELD = "artifact_held"
    BUNDLE_INTEGRITY = "bundle_integrity"
    INVALID_SCORE = "invalid_score"
    MODEL_ERROR = "model_error"
    TIMEOUT = "timeout"


def route_for_score(text: object, score: object, threshold: float) -> tuple[Route, Reason]:
    """The seed's serving rule, fail-closed: blank text, missing or invalid score -> a person."""
    route, reason = FALLBACK_ROUTE, Reason.MODEL_ERROR
    if not isinstance(text, str):
        return route, Reason.INPUT_NOT_TEXT
    if not text.strip():
        return route, Reason.EMPTY_TEXT
    if score is None:
        return route, Reason.MODEL_UNAVAILABLE
    if not valid_score(score):
        return route, Reason.INVALID_SCORE
    if float(score) >= threshold:  # type: ignore[arg-type]
        return Route.HUMAN_REVIEW_NOW, Reason.THRESHOLD
    if float(score) < threshold:  # type: ignore[arg-type]
        route, reason = Route.GUARDED_AGENT, Reason.BELOW_THRESHOLD
    return route, reason


def admitted_by_pinned_bundle(decision: object, pinned_bundle_version: str,
                              pinned_manifest_sha256: str | None = None) -> bool:
    """The downstream agent admits only `guarded_agent` from the pinned bundle.

    `decision` is a runtime `Decision` or a mapping with `route` and `bundle_version` (the
    seed's handoff rows). Anything else, or anything missing, is not admitted. When the agent
    also pins the manifest digest, a decision must carry that exact `manifest_sha256`: a
    version name alone can be reused by a different bundle.
    """
    if isinstance(decision, dict):
        route, version = decision.get("route"), decision.get("bundle_version")
        digest = decision.get("manifest_sha256")
    else:
        route = getattr(decision, "route", None)
        version = getattr(decision, "bundle_version", None)
        digest = getattr(decision, "manifest_sha256", None)
    if pinned_manifest_sha256 is not None and not (
            isinstance(digest, str) and digest == pinned_manifest_sha256):
        return False
    return (isinstance(version, str) and version == pinned_bundle_version
            and isinstance(route, str) and route == Route.GUARDED_AGENT.value)
