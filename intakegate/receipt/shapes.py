"""Shape fixtures: the receipt's tickets as support queues receive them.

Why: a receipt sees only what its fixtures contain. Tickets arrive as chat (lower case, no
punctuation), as e-mails with a greeting and a sign-off, and as a short reply above a quoted
earlier message. A model trained on clean single tickets can miss a risky one in those shapes,
or send a routine one to a person. So the receipt derives, from its own validation rows:

- `chat`: the chat form of every single ticket and of every composed one (a seeded share of the
  composed ones when the recipe says so, to keep the receipt scoreable);
- `email`: every single ticket between a greeting and a sign-off from fixed lists;
- `thread`: every single ticket quoted below a short routine reply (for a positive, the risk sits
  only in the quote).

A positive copy is required (`shape:<kind>:<slice>`); a routine copy is routine
(`shape:<kind>:routine`, and `shape:chat:routine_pair` for a routine pair in chat form). A copy's
id names its kind, its variant and its source (`shp|<kind>|<variant>|<source id>`), so any stage
with the source's text rebuilds the exact text; which variant is used is a seeded, versioned
choice recorded in the receipt spec (`ShapeRecipe`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from intakegate.receipt.composed import PREFIX, ROUTINE_PAIR, chat_form

if TYPE_CHECKING:  # rows are built lazily: the gate parses a recipe without the dataset module
    from intakegate.contract.dataset import TicketRow

SHAPE_PREFIX = "shape:"
ID_PREFIX = "shp"
ROUTINE = "routine"
GENERATOR = "intakegate-shapes-v1"
# The kinds each generator version makes; a receipt names its version.
SHAPE_GENERATORS = {GENERATOR: ("chat", "email", "thread")}

GREETINGS = ("Hi,", "Hello,", "Hi there,", "Dear support team,", "Good morning,",
             "Hello support,")
SIGN_OFFS = ("Thanks,\nSam", "Best regards,\nAlex Morgan", "Cheers,\nPriya",
             "Kind regards,\nJ. Okafor\n\nSent from my phone", "Thank you,\nMaria Lopez",
             "Many thanks,\nTom")
REPLIES = ("Any update on this?", "Following up on my message below.",
           "Hi, just checking you got this.", "Sending this again as I haven't heard back.",
           "Can someone look at this please?", "Is there any news? Thanks.")
QUOTE_HEADERS = ("On Mon, 3 Jun at 09:14, you wrote:", "On Tue, 11 Jun at 17:40, I wrote:",
                 "-----Original Message-----", "On Fri, 21 Jun at 08:02, Customer wrote:")


@dataclass(frozen=True)
class ShapeRecipe:
    """What the shape generator was asked for; stored in the receipt spec."""

    generator: str = GENERATOR
    seed: int = 11
    # Share of the composed fixtures that also get a chat copy (seeded), to bound the cost.
    composed_chat_share: float = 1.0

    @property
    def kinds(self) -> tuple[str, ...]:
        return SHAPE_GENERATORS[self.generator]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ShapeRecipe:
        unknown = sorted(set(obj) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"shape recipe: unknown field(s) {unknown}")
        recipe = cls(**dict(obj))
        if recipe.generator not in SHAPE_GENERATORS:
            raise ValueError(f"shape recipe: generator {recipe.generator!r} is not one of "
                             f"{sorted(SHAPE_GENERATORS)} (this intakegate cannot rebuild its "
                             "fixtures)")
        if isinstance(recipe.seed, bool) or not isinstance(recipe.seed, int):
            raise ValueError("shape recipe: seed must be an integer")
        share = recipe.composed_chat_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ValueError("shape recipe: composed_chat_share must be a number in [0, 1]")
        return recipe


def is_shape_slice(name: str) -> bool:
    return name.startswith(SHAPE_PREFIX)


def is_single_slice(name: str) -> bool:
    """A ticket as the data has it: neither a composed join nor a shape copy."""
    return not name.startswith(PREFIX) and not name.startswith(SHAPE_PREFIX)


def shape_kind(name: str) -> str | None:
    """`chat` of `shape:chat:theft`; None for any other slice."""
    return name.split(":")[1] if is_shape_slice(name) else None


def shape_id(kind: str, variant: str, source: str) -> str:
    return f"{ID_PREFIX}|{kind}|{variant}|{source}"


def parse_shape_id(fixture_id: str) -> tuple[str, str, str] | None:
    """(kind, variant, source id) of a shape id, or None for any other id."""
    parts = fixture_id.split("|", 3)
    if len(parts) != 4 or parts[0] != ID_PREFIX or not parts[3]:
        return None
    return parts[1], parts[2], parts[3]


def shape_text(kind: str, variant: str, text: str) -> str:
    """The shaped text of a source text; `variant` indexes the fixed lists (`g.s`, `r.h`)."""
    if kind == "chat":
        return chat_form(text)
    a, b = (int(x) for x in variant.split("."))
    if kind == "email":
        return f"{GREETINGS[a]}\n\n{text.strip()}\n\n{SIGN_OFFS[b]}"
    if kind == "thread":
        quoted = "\n".join(f"> {line}" if line else ">" for line in text.strip().splitlines())
        return f"{REPLIES[a]}\n\n{QUOTE_HEADERS[b]}\n{quoted}"
    raise ValueError(f"unknown shape {kind!r}")


def _variant(kind: str, source: str, seed: int) -> str:
    if kind == "chat":
        return "0"
    rng = random.Random(f"{seed}:{kind}:{source}")
    lists = (GREETINGS, SIGN_OFFS) if kind == "email" else (REPLIES, QUOTE_HEADERS)
    return ".".join(str(rng.randrange(len(x))) for x in lists)


def copy_slice(kind: str, row_slice: str, gold: int) -> str:
    if gold == 1:
        return f"{SHAPE_PREFIX}{kind}:{row_slice.removeprefix(PREFIX)}"
    return f"{SHAPE_PREFIX}{kind}:{'routine_pair' if row_slice == ROUTINE_PAIR else ROUTINE}"


def required_fixture_slices(required: Sequence[str], shape_kinds: Sequence[str] = ()
                            ) -> list[str]:
    """Every required slice of a fixture inventory (the one rule for it): each required slice,
    its composed copies and its copies in each shape kind (`shape:<kind>:<slice>`)."""
    return [*required, *(f"{PREFIX}{s}" for s in required),
            *(f"{SHAPE_PREFIX}{k}:{s}" for k in shape_kinds for s in required)]


def shape_fixtures(rows: Sequence[TicketRow], recipe: ShapeRecipe) -> list[TicketRow]:
    """Shape copies of one split's fixtures (single and composed rows), deterministic."""
    from intakegate.contract.dataset import TicketRow

    out: list[TicketRow] = []
    for row in sorted(rows, key=lambda r: r.id):
        single = is_single_slice(row.slice)
        if not single and not row.slice.startswith(PREFIX):
            continue  # shape copies are not shaped again
        for kind in recipe.kinds:
            if not single and (kind != "chat" or not _sampled(row.id, recipe)):
                continue
            variant = _variant(kind, row.id, recipe.seed)
            out.append(TicketRow(shape_id(kind, variant, row.id),
                                 shape_text(kind, variant, row.text), row.gold_route,
                                 copy_slice(kind, row.slice, row.gold), account=row.account,
                                 month=row.month, origin=recipe.generator))
    return out


def shape_training_rows(rows: Sequence[TicketRow], share: float, recipe: ShapeRecipe
                        ) -> list[TicketRow]:
    """`share * len(rows)` shape copies of train rows (single and composed train rows alike),
    each row and kind picked by a seeded draw. A copy keeps its source's route and slice (the
    label the model learns); only the receipt's copies get `shape:` slices."""
    from intakegate.contract.dataset import TicketRow

    n = round(share * len(rows))
    if n <= 0 or not rows:
        return []
    rng = random.Random(f"train-shapes:{recipe.seed}")
    ordered = sorted(rows, key=lambda r: r.id)
    out = []
    for _ in range(n):
        row, kind = rng.choice(ordered), rng.choice(recipe.kinds)
        variant = _variant(kind, row.id, recipe.seed + len(out))
        out.append(TicketRow(shape_id(kind, variant, row.id), shape_text(kind, variant, row.text),
                             row.gold_route, row.slice, account=row.account, month=row.month,
                             origin=recipe.generator))
    return out


def _sampled(fixture_id: str, recipe: ShapeRecipe) -> bool:
    if recipe.composed_chat_share >= 1.0:
        return True
    return random.Random(f"{recipe.seed}:chat:{fixture_id}").random() < \
        recipe.composed_chat_share

