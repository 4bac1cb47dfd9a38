"""The fixed vocabularies of the product: routes, gate decisions and routing reasons."""

from __future__ import annotations

from enum import Enum


class Route(str, Enum):
    """Where a ticket goes. Label 1 is human review, label 0 the guarded agent."""

    HUMAN_REVIEW_NOW = "human_review_now"
    GUARDED_AGENT = "guarded_agent"

    @property
    def label(self) -> int:
        return 1 if self is Route.HUMAN_REVIEW_NOW else 0


FALLBACK_ROUTE = Route.HUMAN_REVIEW_NOW
ID2LABEL = {0: Route.GUARDED_AGENT.value, 1: Route.HUMAN_REVIEW_NOW.value}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}


class GateDecision(str, Enum):
    """The release decision of the exact-receipt gate."""

    ELIGIBLE_FOR_SHADOW = "eligible_for_shadow"
    HOLD = "hold"


class Split(str, Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"
