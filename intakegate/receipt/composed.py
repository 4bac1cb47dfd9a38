"""Composed tickets: a risky ticket joined with routine ones, and routine pairs.

Why: real tickets carry several requests, and a receipt sees only what its fixtures contain.
Every required-slice positive of a split is joined with routine tickets of the same split
before and after it (other accounts where the data has accounts), each way with a space, a
line break and no punctuation between them, and (generator v2) as chat: both parts lowercased
with their punctuation dropped; routine tickets are paired with each other too. Positives are
required (slice `composed:<slice>`), pairs count as routine tickets.

Why chat: real tickets arrive as one lowercase run with no punctuation at all, and v1's joins
keep each part's own punctuation. On an eligible refund-intake bundle (receipt v1) that shape
let required compositions through, and a required ticket alone can fall below the threshold
once its comma and full stop are gone (measured: lab/README.md, composed_shapes). A dataset
opts in through its recipe (`composed_generator`).

A composed id names its parts and joiner (`cmp|<first>|<second>|<joiner>`), so any stage that
has the parts rebuilds the exact text from the id alone; which parts are joined is a seeded,
versioned choice recorded in the receipt spec (`ComposedRecipe`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from intakegate.scoring.segments import SegmentPolicy, segment_ticket
from intakegate.vocab import Route

if TYPE_CHECKING:  # rows are built lazily: the gate parses a recipe without the dataset module
    from intakegate.contract.dataset import TicketRow

# The joins each generator version makes; a receipt names its version, so every bundle keeps
# its exact inventory.
GENERATOR_JOINERS = {"intakegate-composed-v1": ("space", "newline", "bare"),
                     "intakegate-composed-v2": ("space", "newline", "bare", "chat")}
# What train uses unless the dataset recipe (or `--composed-generator`) names v2. Why not v2 by
# default yet: with its chat join in receipt and training, refund-intake's recipe is held at
# 46.2% validation FP against its 25% budget (refund-intake-minilm-v4); see README.
GENERATOR = "intakegate-composed-v1"
JOINERS = GENERATOR_JOINERS[GENERATOR]
PREFIX = "composed:"
ROUTINE_PAIR = "composed:routine_pair"
_END_PUNCT = re.compile(r"[\s.!?。！？…]+$")
_NOT_CHAT = re.compile(r"[^\w\s']")  # everything but letters, digits, spaces and apostrophes
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class ComposedRecipe:
    """What the generator was asked for; stored in the receipt spec so the inventory is exact."""

    generator: str = GENERATOR
    seed: int = 11
    before: int = 2
    after: int = 2
    routine_pairs_per_routine: int = 1

    @property
    def joiners(self) -> tuple[str, ...]:
        return GENERATOR_JOINERS[self.generator]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ComposedRecipe:
        unknown = sorted(set(obj) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"composed recipe: unknown field(s) {unknown}")
        recipe = cls(**dict(obj))
        if recipe.generator not in GENERATOR_JOINERS:
            raise ValueError(f"composed recipe: generator {recipe.generator!r} is not one of "
                             f"{sorted(GENERATOR_JOINERS)} (this intakegate cannot rebuild its "
                             "fixtures)")
        return recipe


def chat_form(text: str) -> str:
    """A ticket as chat is typed: lowercase, no punctuation but apostrophes, one space apart."""
    return _SPACES.sub(" ", _NOT_CHAT.sub(" ", text.lower())).strip()


def join_texts(first: str, second: str, joiner: str) -> str:
    """Two tickets as one: `space`, `newline`, `bare` (the first one's closing punctuation
    dropped), or `chat` (both in `chat_form`, one space apart)."""
    a, b = first.strip(), second.strip()
    if joiner == "space":
        return f"{a} {b}"
    if joiner == "newline":
        return f"{a}\n{b}"
    if joiner == "bare":
        return f"{_END_PUNCT.sub('', a)} {b}"
    if joiner == "chat":
        return f"{chat_form(a)} {chat_form(b)}"
    raise ValueError(f"unknown joiner {joiner!r}; use one of {JOINERS}")


_ALL_JOINERS = frozenset(j for joins in GENERATOR_JOINERS.values() for j in joins)


def composed_id(first: str, second: str, joiner: str) -> str:
    return f"cmp|{first}|{second}|{joiner}"


def parse_composed_id(fixture_id: str) -> tuple[str, str, str] | None:
    """(first id, second id, joiner) of a composed id, or None for an ordinary one."""
    parts = fixture_id.split("|")
    if len(parts) != 4 or parts[0] != "cmp" or parts[3] not in _ALL_JOINERS:
        return None
    return parts[1], parts[2], parts[3]


def composed_text(fixture_id: str, texts: Mapping[str, str]) -> str | None:
    """The text of a composed fixture from its parts' texts; None when a part is unknown."""
    parsed = parse_composed_id(fixture_id)
    if parsed is None or parsed[0] not in texts or parsed[1] not in texts:
        return None
    return join_texts(texts[parsed[0]], texts[parsed[1]], parsed[2])


def is_composed_slice(name: str) -> bool:
    return name.startswith(PREFIX)


def _row(first: TicketRow, second: TicketRow, joiner: str, route: Route, slice_: str
         ) -> TicketRow:
    from intakegate.contract.dataset import TicketRow

    return TicketRow(composed_id(first.id, second.id, joiner),
                     join_texts(first.text, second.text, joiner), route, slice_,
                     origin=GENERATOR)


def _partners(rng: random.Random, pool: Sequence[TicketRow], avoid: TicketRow, k: int
              ) -> list[TicketRow]:
    """k distinct routine rows, from other accounts when the data has accounts."""
    others = [r for r in pool if r.id != avoid.id
              and (avoid.account is None or r.account != avoid.account)]
    if len(others) < k:
        others = [r for r in pool if r.id != avoid.id]
    return rng.sample(others, min(k, len(others)))


def composed_fixtures(rows: Sequence[TicketRow], required_slices: Sequence[str],
                      recipe: ComposedRecipe = ComposedRecipe()) -> list[TicketRow]:
    """The composed fixtures of one split (validation or test), deterministic for a recipe."""
    required = set(required_slices)
    ordered = sorted(rows, key=lambda r: r.id)
    routine = [r for r in ordered if r.gold == 0]
    out: list[TicketRow] = []
    if not routine:
        return out
    for pos in (r for r in ordered if r.gold == 1 and r.slice in required):
        rng = random.Random(f"{recipe.seed}:{pos.id}")
        partners = _partners(rng, routine, pos, recipe.before + recipe.after)
        for i, other in enumerate(partners):
            first, second = (other, pos) if i < recipe.before else (pos, other)
            for joiner in recipe.joiners:
                out.append(_row(first, second, joiner, Route.HUMAN_REVIEW_NOW,
                                PREFIX + pos.slice))
    joiners = recipe.joiners
    for n, first in enumerate(routine):
        rng = random.Random(f"{recipe.seed}:pair:{first.id}")
        for k, second in enumerate(_partners(rng, routine, first,
                                             recipe.routine_pairs_per_routine)):
            out.append(_row(first, second, joiners[(n + k) % len(joiners)],
                            Route.GUARDED_AGENT, ROUTINE_PAIR))
    return out


def composed_training_rows(rows: Sequence[TicketRow], share: float, seed: int,
                           joiners: Sequence[str] = JOINERS) -> list[TicketRow]:
    """`share * len(rows)` composed rows from train rows only: half a risky ticket with a routine
    one (risky route and slice, either order), half routine pairs (first part's slice), each
    with one of `joiners` (the receipt's own)."""
    n = round(share * len(rows))
    positives = [r for r in rows if r.gold == 1]
    routine = [r for r in rows if r.gold == 0]
    if n <= 0 or not routine:
        return []
    from intakegate.contract.dataset import TicketRow

    rng = random.Random(f"train:{seed}")
    out: list[TicketRow] = []
    for i in range(n):
        joiner = rng.choice(joiners)
        if positives and i % 2 == 0:
            risky, other = rng.choice(positives), rng.choice(routine)
            first, second = (risky, other) if rng.random() < 0.5 else (other, risky)
            out.append(TicketRow(composed_id(first.id, second.id, joiner),
                                 join_texts(first.text, second.text, joiner),
                                 Route.HUMAN_REVIEW_NOW, risky.slice, origin=GENERATOR))
        else:
            first, second = rng.choice(routine), rng.choice(routine)
            out.append(TicketRow(composed_id(first.id, second.id, joiner),
                                 join_texts(first.text, second.text, joiner),
                                 Route.GUARDED_AGENT, first.slice, origin=GENERATOR))
    return out


def routine_segment_rows(rows: Sequence[TicketRow], policy: SegmentPolicy, share: float,
                         seed: int, pool_rows: Sequence[TicketRow] = ()) -> list[TicketRow]:
    """`share * len(rows)` parts (sentences, word windows) of routine train tickets, as routine
    rows, drawn from `rows` and `pool_rows` (composed routine pairs and routine shape copies:
    a window across the join of two routine requests, or around a greeting, a sign-off or a
    quote header, is routine too). Why: scored out of context, a fragment of a routine ticket
    can look risky ("the portal rejected my return" inside a policy question); the parts of a
    routine ticket carry no risk, so the encoder and the lexical model learn that. Parts of
    risky tickets are not used: which part carries the risk is not labelled."""
    n = round(share * len(rows))
    if n <= 0:
        return []
    from intakegate.contract.dataset import TicketRow

    pool: dict[str, TicketRow] = {}
    for row in sorted((r for r in [*rows, *pool_rows] if r.gold == 0), key=lambda r: r.id):
        text = row.text.strip()
        for seg in segment_ticket(text, policy)[1:]:
            part = text[seg.start:seg.end]
            pool.setdefault(part, TicketRow(f"seg|{row.id}|{seg.start}-{seg.end}", part,
                                            Route.GUARDED_AGENT, row.slice, origin=GENERATOR))
    rng = random.Random(f"segments:{seed}")
    return rng.sample(list(pool.values()), min(n, len(pool)))
