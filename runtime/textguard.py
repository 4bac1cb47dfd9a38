"""Serving-only escalations on top of the shared input policy.

`intakegate.scoring.encoding.prepare_text` is the one normalisation path for training, gates and
serving,
and it already refuses bidi controls, tag characters and broken Unicode. Two more obfuscations
are cheap to see after normalisation and would otherwise reach the model as text it was never
validated on: a word that mixes confusable scripts (Cyrillic `а` inside `refund`) and a phrase
spelled out letter by letter (`i g n o r e  p r e v i o u s`). Both send the ticket to a person;
they only add escalations, so they cannot weaken what the receipt validated.
"""

from __future__ import annotations

import re
import unicodedata

CONFUSABLE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")
SPACED_MIN_LETTERS = 6
# A small confusable map for the log line; unknown letters are kept as they are.
_SKELETON = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "к": "k", "м": "m", "т": "t", "в": "b",
    "н": "h", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "ι": "i",
    "κ": "k", "υ": "u", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})
_WORD = re.compile(r"[^\W\d_]+")
_SPACED = re.compile(r"(?<!\S)[^\W\d_](?:\s+[^\W\d_]){%d,}(?!\S)" % (SPACED_MIN_LETTERS - 1))


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    head = name.split(" ", 1)[0]
    return head if head in CONFUSABLE_SCRIPTS else None


def mixed_script_word(text: str) -> str | None:
    """The first word mixing Latin, Cyrillic or Greek letters, as its Latin skeleton."""
    if text.isascii():  # one script only
        return None
    for match in _WORD.finditer(text):
        word = match.group()
        if word.isascii():
            continue
        scripts = {s for s in map(_script, word) if s is not None}
        if len(scripts) > 1:
            return word.translate(_SKELETON)[:64]
    return None


def spaced_letters(text: str) -> str | None:
    """A run of single letters separated by spaces, joined back into the word it hides."""
    match = _SPACED.search(text)
    if match is None:
        return None
    return "".join(match.group().split())[:64]


def obfuscation(text: str) -> str | None:
    """A detail line when a prepared ticket hides text from the model, else None."""
    word = mixed_script_word(text)
    if word is not None:
        return f"mixed_script_word: skeleton {word!r}"
    spelled = spaced_letters(text)
    if spelled is not None:
        return f"spaced_letters: {spelled!r}"
    return None
