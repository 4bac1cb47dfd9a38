"""Ticket shapes: the form a ticket arrives in, tagged per row beside its slice.

A slice says what a ticket is about; a shape says how it is written. A dataset that tags shapes
lets the data card count every slice in every shape and name the cells that are still thin, so
a model is never judged only on the tidy one-paragraph form.

The vocabulary is fixed here; a row with any other `shape` is an error naming the row. The field
is optional: a row without it is *untagged* (its shape was never reviewed), not `plain`. Datasets
written before shapes existed (refund-intake v1) have no shape on any row, and their data card
renders exactly as before.
"""

from __future__ import annotations

from intakegate.vocab import Route

SHAPES: tuple[str, ...] = (
    "plain",          # one paragraph, the v1 form
    "email",          # greeting, body with line breaks, sign-off
    "quoted_reply",   # a short reply above a quoted earlier message
    "chat",           # lower case, no punctuation, run-on
    "non_native",     # non-native English
    "typos",          # misspellings
    "angry_routine",  # angry tone, routine request (routine rows only)
    "multi_request",  # several requests in one long ticket
    "trap_words",     # hacked, code, damaged, window, stolen, exception in a routine sense
    "indirect",       # risk the customer never names (human_review_now rows only)
)

# Shapes that only make sense for one route: an angry but routine ticket, or a routine ticket
# using risky words in a routine sense, is routine by definition; an indirect risk is a risk.
SHAPE_ROUTE: dict[str, Route] = {
    "angry_routine": Route.GUARDED_AGENT,
    "trap_words": Route.GUARDED_AGENT,
    "indirect": Route.HUMAN_REVIEW_NOW,
}


def shape_applies(shape: str, route: Route) -> bool:
    """Whether a row routed `route` may carry `shape` (and a slice of that route should)."""
    only = SHAPE_ROUTE.get(shape)
    return only is None or only is route


def applicable_shapes(route: Route) -> tuple[str, ...]:
    return tuple(s for s in SHAPES if shape_applies(s, route))
