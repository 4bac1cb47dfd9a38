"""The input policy: one text-preparation and windowing path for training, export gates and serving.

Text is data. It is normalised the same way everywhere (trim, NFKC, controls and zero-width
characters removed); obfuscation that changes what a person would read (bidi controls, Unicode tag
characters) and broken Unicode are refused rather than guessed at. A ticket longer than the model
window is never truncated: it is split into overlapping windows with the tokenizer's own
`overflowing` encodings. Which parts of a ticket are scored (sentences, word windows) is the
policy's `segmentation` (`scoring.segments`); `scoring.ticket_score` scores them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from intakegate.routing import Reason
from intakegate.scoring.bounds import CONTROLS, normalize_within, runs
from intakegate.scoring.segments import SegmentPolicy
from intakegate.scoring.tokenizer_pins import parsed_tokenizer

ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e", "\u00ad"}
BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E,
                                  0x200F, 0x061C)}
KEEP_CONTROLS = {"\n", "\t"}
PER_TICKET = "per_ticket"  # a ticket's rows share padded runs (bundles before `model_runs`)
PER_ROW = "per_row"  # a row's logits depend on its own tokens alone
MODEL_RUNS = (PER_TICKET, PER_ROW)
_HIDDEN = re.compile("[%s\U000E0000-\U000E007F]" % "".join(sorted(BIDI_CONTROLS)))
_DROP_ZERO_WIDTH = {ord(c): None for c in ZERO_WIDTH}


@dataclass(frozen=True)
class InputPolicy:
    """How a ticket becomes model windows. Stored in the manifest as `input_policy`."""

    max_length: int = 256
    stride: int = 32
    max_windows: int = 16
    char_cap: int = 65536  # before and after normalization
    max_run_chars: int = 1000  # longest stretch without whitespace (one "word")
    trim_outer_whitespace: bool = True
    preserve_punctuation: bool = True
    normalization: str = "NFKC"
    strip_controls: bool = True
    long_input: str = "max_over_windows"
    # None only in bundles written before segment scoring; the runtime refuses those.
    segmentation: SegmentPolicy | None = None
    # How rows meet the model (`scoring.ticket_score`): `per_row` runs each distinct row
    # alone, so a segment scores the same in every ticket it appears in; `per_ticket` (bundles
    # written before it) pads a ticket's rows into shared runs.
    model_runs: str = PER_TICKET

    def __post_init__(self) -> None:
        if self.model_runs not in MODEL_RUNS:
            raise ValueError(f"input_policy.model_runs: {self.model_runs!r} is not one of "
                             f"{list(MODEL_RUNS)}")

    def to_json(self) -> dict[str, Any]:
        """The policy as the manifest stores it; `model_runs` is written only when it is not
        `per_ticket`, so bundles from before it keep the digest their receipts pinned."""
        out = dict(self.__dict__)
        out["segmentation"] = None if self.segmentation is None else self.segmentation.to_json()
        if self.model_runs == PER_TICKET:
            del out["model_runs"]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> InputPolicy:
        kw = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        seg = kw.get("segmentation")
        kw["segmentation"] = None if seg is None else SegmentPolicy.from_json(seg)
        return cls(**kw)


def policy_digest(policy: InputPolicy) -> str:
    """sha256 of the policy's canonical JSON: the scoring rules a receipt's model_version pins."""
    import hashlib

    canonical = json.dumps(policy.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """Text ready for the tokenizer, or the reason it must go to a person."""

    text: str | None
    reason: Reason | None
    stripped_controls: int = 0
    detail: str = ""


def prepare_text(text: object, policy: InputPolicy) -> Prepared:
    """Normalise a ticket, or say why it cannot be scored. Never raises, and its work is
    bounded by the policy's caps (`intakegate.scoring.bounds`), whatever the input."""
    # type(), not isinstance(): an object can claim to be a str through `__class__`; a str
    # subclass is copied to a plain str so none of its own methods (encode, len) ever run.
    if not issubclass(type(text), str):
        return Prepared(None, Reason.INPUT_NOT_TEXT, detail=type(text).__name__)
    text = str.__str__(text)  # type: ignore[arg-type]
    if len(text) > policy.char_cap:
        return Prepared(None, Reason.OVER_LENGTH_CAP, detail=f"{len(text)} chars")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Prepared(None, Reason.INVALID_UNICODE, detail="lone surrogate")
    if not text.strip():
        return Prepared(None, Reason.EMPTY_TEXT)
    if _HIDDEN.search(text):
        found_bidi = sorted({f"U+{ord(c):04X}" for c in text if c in BIDI_CONTROLS})
        found_tags = sorted({f"U+{ord(c):05X}" for c in text if 0xE0000 <= ord(c) <= 0xE007F})
        return Prepared(None, Reason.OBFUSCATION, detail=",".join(found_bidi + found_tags)[:200])
    out = normalize_within(text, policy.normalization, policy.char_cap)
    if out is None:
        return Prepared(None, Reason.OVER_LENGTH_CAP,
                        detail=f"over {policy.char_cap} chars after {policy.normalization}")
    out, stripped = _stripped(out, policy)
    if policy.trim_outer_whitespace:
        out = out.strip()
    if not out:
        return Prepared(None, Reason.EMPTY_TEXT, stripped, "blank after normalization")
    words, run = runs(out)
    if run > policy.max_run_chars:
        return Prepared(None, Reason.OVER_LENGTH_CAP, stripped,
                        f"long_run: {run} chars without whitespace > {policy.max_run_chars}")
    if words > policy.max_windows * policy.max_length:
        return Prepared(None, Reason.OVER_LENGTH_CAP, stripped,
                        f"over_window_cap: at least {words} tokens > {policy.max_windows} "
                        f"windows of {policy.max_length}")
    return Prepared(out, None, stripped)


def _stripped(text: str, policy: InputPolicy) -> tuple[str, int]:
    """Controls and zero-width characters removed (the policy's strip step); the count."""
    if not policy.strip_controls:
        return text, 0
    out, stripped = CONTROLS.subn("", text)
    return out.translate(_DROP_ZERO_WIDTH), stripped


def raw_span(raw: str, prepared: str, policy: InputPolicy, start: int, end: int
             ) -> tuple[int, int]:
    """Map a span of the prepared text back to code-point offsets of the raw ticket.

    Clients highlight the deciding segment in the text they sent, which normalisation may have
    changed (NFKC, stripped zero-width characters, trimmed whitespace). The common case is a
    plain substring; otherwise the offsets are found by bisecting on normalised prefixes.
    """
    lead = raw.find(prepared)
    if lead >= 0:
        return lead + start, lead + end

    def body(text: str) -> str:
        out = unicodedata.normalize(policy.normalization, text) if policy.normalization else text
        return _stripped(out, policy)[0]

    whole = body(raw)
    shift = len(whole) - len(whole.lstrip()) if policy.trim_outer_whitespace else 0

    def first_prefix_with(n: int) -> int:
        lo, hi = 0, len(raw)
        while lo < hi:
            mid = (lo + hi) // 2
            if len(body(raw[:mid])) >= n:
                hi = mid
            else:
                lo = mid + 1
        return lo

    raw_start = max(first_prefix_with(start + shift + 1) - 1, 0)
    return raw_start, max(first_prefix_with(end + shift), raw_start)


def configure_tokenizer(tokenizer: Any, policy: InputPolicy) -> Any:
    """Set the tokenizer's truncation to the policy's window and stride; no padding.

    Overflowing tokens become extra windows, so truncation here never drops text.
    """
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=policy.max_length, stride=policy.stride,
                                strategy="longest_first", direction="right")
    return tokenizer


def token_id_bound(tokenizer: Any) -> int:
    """One past the largest id the tokenizer can emit: the bound of the token-id range check.

    Why not `get_vocab_size(with_added_tokens=True)`: it builds the whole vocabulary map, 5 ms
    of a router's cold start for BERT's 30,522 tokens; the model's size and the added tokens'
    ids give the bound without it (the same 30,522 there).
    """
    added = tokenizer.get_added_tokens_decoder()
    return max([tokenizer.get_vocab_size(with_added_tokens=False), *(i + 1 for i in added)])


def tokenizer_matches_policy(tokenizer_json: str | Mapping[str, Any], policy: InputPolicy
                             ) -> str | None:
    """Return a mismatch description, or None when tokenizer.json follows the policy."""
    obj = parsed_tokenizer(tokenizer_json)
    trunc = obj.get("truncation")
    if obj.get("padding") is not None:
        return "tokenizer.json enables padding"
    if not trunc:
        return "tokenizer.json has no truncation window"
    if trunc.get("max_length") != policy.max_length or trunc.get("stride") != policy.stride:
        return (f"tokenizer.json window {trunc.get('max_length')}/{trunc.get('stride')} != "
                f"policy {policy.max_length}/{policy.stride}")
    return None


@dataclass(frozen=True)
class Windows:
    """Model inputs for a batch of tickets: one row per window, `owner` maps rows to tickets."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    owner: np.ndarray
    windows_per_text: tuple[int, ...]
    unk_counts: tuple[int, ...] = ()


def encode_windows(tokenizer: Any, texts: Sequence[str], policy: InputPolicy) -> Windows:
    """Tokenize prepared texts into padded windows (padding to the longest window only)."""
    encodings = tokenizer.encode_batch(list(texts))
    rows: list[Any] = []
    owner: list[int] = []
    per_text: list[int] = []
    for i, enc in enumerate(encodings):
        windows = [enc, *enc.overflowing]
        if len(windows) > policy.max_windows:
            raise OverflowError(f"text {i} needs {len(windows)} windows > {policy.max_windows}")
        rows.extend(windows)
        owner.extend([i] * len(windows))
        per_text.append(len(windows))
    return padded(rows, owner, per_text)


def padded(rows: Sequence[Any], owner: Sequence[int], per_text: Sequence[int]) -> Windows:
    """Tokenizer encodings as one zero-padded batch (padded to the longest row only)."""
    return padded_ids([w.ids for w in rows], [w.attention_mask for w in rows],
                      [w.type_ids for w in rows], owner, per_text)


def padded_ids(ids: Sequence[Sequence[int]], masks: Sequence[Sequence[int]],
               types: Sequence[Sequence[int]], owner: Sequence[int], per_text: Sequence[int]
               ) -> Windows:
    """`padded` from id lists already read off the encodings (each `Encoding.ids` read builds
    a new list, so the scorer reads them once). Rows of one length, the usual single-row
    ticket, become arrays in one step."""
    n = len(ids)
    width = max(map(len, ids), default=1)
    if n and all(len(row) == width for row in ids):
        arrays = [np.array(rows, dtype=np.int64).reshape(n, width) for rows in (ids, masks, types)]
    else:
        arrays = [np.zeros((n, width), dtype=np.int64) for _ in range(3)]
        for array, rows in zip(arrays, (ids, masks, types)):
            for r, row in enumerate(rows):
                array[r, :len(row)] = row
    return Windows(arrays[0], arrays[1], arrays[2], np.asarray(owner, dtype=np.int64),
                   tuple(per_text))
