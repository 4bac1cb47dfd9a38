"""The queue of routed tickets: counts per route and reason, and the filter the view applies.

Plain Python so that counting and filtering are tested without Qt; the Qt model reads from it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from intakegate_desk.session import Routed


@dataclass(frozen=True)
class Filter:
    """Empty fields match everything; `text` matches the ticket id, source, reason or detail."""

    route: str = ""
    reason: str = ""
    text: str = ""

    def matches(self, item: Routed) -> bool:
        d = item.decision
        if self.route and d.route.value != self.route:
            return False
        if self.reason and d.reason.value != self.reason:
            return False
        if self.text:
            needle = self.text.lower()
            hay = " ".join((str(item.ticket.id), item.ticket.source, d.reason.value, d.detail,
                            item.ticket.text if isinstance(item.ticket.text, str) else ""))
            return needle in hay.lower()
        return True


@dataclass(frozen=True)
class Counts:
    total: int
    routes: dict[str, int]
    reasons: dict[str, int]

    def summary(self) -> str:
        routes = "  ".join(f"{k} {v}" for k, v in sorted(self.routes.items()))
        reasons = ", ".join(f"{k} {v}" for k, v in
                            sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"{self.total} tickets  ·  {routes}  ·  reasons: {reasons}" if self.total else \
            "no tickets yet"


def count(items: list[Routed]) -> Counts:
    routes = Counter(i.decision.route.value for i in items)
    reasons = Counter(i.decision.reason.value for i in items)
    return Counts(len(items), dict(routes), dict(reasons))
