"""Bounded work per ticket: caps that hold after normalization, checked in time linear in the cap.

`len(text) <= char_cap` before normalization is not enough: NFKC expands some characters up to
18x (U+FDFA becomes 18 characters), so `"\\ufdfa" * 65000` passes the raw cap and grows to 1.17M
characters, and normalizing it all takes about 80 ms before anything can refuse it. Here the text
is normalized in slices and refused as soon as the output passes the cap, so a refusal costs
about as much as normalizing `char_cap` output characters, whatever the input.

Slicing can split a base character from a combining mark that NFKC would compose with it, so the
sliced length may overestimate the true one by a few characters per slice. That can only refuse
(a person sees the ticket), never admit: text under the cap by the sliced count is normalized
again as a whole and checked exactly.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

SLICE = 2048
# C0/C1 controls (Unicode category Cc) except the tab and newline the policy keeps.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
WHITESPACE_RUN = re.compile(r"\s+")


def normalize_within(text: str, form: str, cap: int) -> str | None:
    """`unicodedata.normalize(form, text)`, or None when the result would exceed `cap`."""
    if not form or unicodedata.is_normalized(form, text):
        return text if len(text) <= cap else None
    total = 0
    for start in range(0, len(text), SLICE):
        total += len(unicodedata.normalize(form, text[start:start + SLICE]))
        if total > cap:
            return None
    out = unicodedata.normalize(form, text)
    return out if len(out) <= cap else None


def runs(text: str) -> tuple[int, int]:
    """(how many stretches of non-whitespace, the longest one's length), in linear time.

    The count is a lower bound on the tokens any whitespace-splitting tokenizer produces, so a
    ticket with more stretches than its windows can hold is refused without tokenizing it.
    """
    longest = start = count = 0
    for match in WHITESPACE_RUN.finditer(text):
        if match.start() > start:
            count += 1
            longest = max(longest, match.start() - start)
        start = match.end()
    if len(text) > start:
        count += 1
        longest = max(longest, len(text) - start)
    return count, longest


PROBE_FROM = 8192


def window_overflow(tokenizer: Any, text: str, max_windows: int) -> str | None:
    """A refusal detail when a prefix of `text` already needs more than `max_windows` windows.

    Text dense in tokens (`"!?!?" * 16000`: every punctuation mark is a token) passes the
    character and word caps yet needs hundreds of windows, and tokenizing all 64k characters
    only to refuse it took 75-130 ms. Prefixes of 8k, 16k, 32k characters, each cut at
    whitespace (where every tokenizer here splits, so a prefix never has more tokens than the
    whole), are tokenized first; the first one over the cap refuses the ticket. A ticket that
    fits pays at most about twice its own tokenization. Tokenizer faults are left to the
    scorer, which reports them per ticket.
    """
    size = PROBE_FROM
    while size < len(text):
        cut = size
        while cut > size - 2048 and cut > 0 and not text[cut - 1].isspace():
            cut -= 1
        if cut > 0 and text[cut - 1].isspace():
            try:
                encoding = tokenizer.encode(text[:cut])
                windows = 1 + len(encoding.overflowing)
            except Exception:  # noqa: BLE001 - the scorer reports tokenizer faults
                return None
            if windows > max_windows:
                return (f"over_window_cap: the first {cut} chars already need {windows} "
                        f"windows > {max_windows}")
        size *= 2
    return None
