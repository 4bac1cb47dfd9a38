"""Segments of a ticket: the whole text, its sentences (and runs of them), and word windows.

Why: a ticket's risk often sits in one request among several. Scored as one text, a routine
sentence before or after a risky one dilutes both the encoder and the lexical score; scored as
the maximum over its segments, the risky part decides. Sentences come from `sentencex`
(Wikimedia's rule-based segmenter: deterministic, offline, no model files, a compiled wheel for
Linux, macOS and Windows, about 2 microseconds per short ticket). Line breaks are boundaries too
(pasted threads, lists). A fragment shorter than `min_words` ("Thanks!", "Hi team,", "Hacked.")
is never scored alone: it joins both neighbours, the sentence before it and the one after it,
because it may belong to either request. Chat-style text without punctuation has one
"sentence", so overlapping word windows are further segments: over the whole ticket, or
(`window_scope="sentence"`) inside each sentence unit longer than a window, so that a window
never straddles two punctuated requests and a short request is never cut out of its context.

Every offset here is a code-point offset into the *prepared* text (`encoding.prepare_text`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

SENTENCEX = "sentencex"
NO_SEGMENTER = "none"
_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\S+")
DEFAULT_MIN_WORDS = 3  # "Thanks!", "Hi team," are not scored alone


class WindowScope(str, Enum):
    TICKET = "ticket"
    SENTENCE = "sentence"


class SegmentKind(str, Enum):
    WHOLE = "whole"
    SENTENCE = "sentence"
    WINDOW = "window"


class SegmenterUnavailable(RuntimeError):
    """The policy names a segmenter (or a version of it) this installation does not have."""


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    start: int
    end: int


@dataclass(frozen=True)
class SegmentPolicy:
    """How a prepared ticket is cut into scored segments. Part of the input policy (manifest).

    `max_sentences`: segments are runs of 1..max_sentences consecutive sentences, so a request
    spread over two sentences is still seen together. `window_words`/`window_stride`: word
    windows (0 = none), chosen on validation, over the whole ticket or, with `window_scope`
    `sentence`, inside each sentence unit that is longer than a window; `window_over_words`
    (0 = one window's length) cuts only units longer than that, so a short single request is
    scored in its own context and only long runs (chat-style requests written without
    punctuation) are cut. `max_segments` bounds the model work per ticket: a ticket with more
    segments goes to a person (over_length_cap).
    """

    segmenter: str = SENTENCEX
    segmenter_version: str = ""
    language: str = "en"
    split_lines: bool = True
    min_words: int = DEFAULT_MIN_WORDS
    max_sentences: int = 2
    window_words: int = 0
    window_stride: int = 0
    window_scope: WindowScope = WindowScope.TICKET
    window_over_words: int = 0
    max_segments: int = 512

    def __post_init__(self) -> None:
        if self.segmenter not in (SENTENCEX, NO_SEGMENTER):
            raise ValueError(f"unknown segmenter {self.segmenter!r}; this intakegate knows "
                             f"{[SENTENCEX, NO_SEGMENTER]}")
        if self.max_sentences < 1 or self.min_words < 0 or self.max_segments < 1:
            raise ValueError("segmentation: max_sentences >= 1, min_words >= 0, "
                             "max_segments >= 1")
        if self.window_words < 0 or (self.window_words and not
                                     0 < self.window_stride <= self.window_words):
            raise ValueError("segmentation: window_stride must be in (0, window_words]")
        object.__setattr__(self, "window_scope", WindowScope(self.window_scope))
        if self.window_over_words < 0 or (self.window_over_words and not self.window_words):
            raise ValueError("segmentation: window_over_words needs windows and must be >= 0")
        if self.window_scope is WindowScope.SENTENCE and self.segmenter == NO_SEGMENTER:
            raise ValueError("segmentation: sentence-scoped windows need a sentence segmenter")

    @property
    def name(self) -> str:
        """A short label for reports: `whole`, `sent2`, `sent2+win12/6`; `sent2m2` merges only
        fragments under 2 words (the default, 3, is not written); `sent2+swin10/2` windows
        inside sentences; `sent2+swin6/3over14` only inside sentences of more than 14 words."""
        scope = "s" if self.window_scope is WindowScope.SENTENCE else ""
        over = f"over{self.window_over_words}" if self.window_over_words else ""
        windows = (f"+{scope}win{self.window_words}/{self.window_stride}{over}"
                   if self.window_words else "")
        if self.segmenter == NO_SEGMENTER:
            return "whole" + windows
        base = f"sent{self.max_sentences}" + (f"m{self.min_words}"
                                              if self.min_words != DEFAULT_MIN_WORDS else "")
        return base + windows

    def to_json(self) -> dict[str, Any]:
        """The policy as stored in the manifest (and hashed into the receipt identity). The
        defaults of `window_scope` and `window_over_words` are not written, so policies from
        before them keep the digest their bundles pinned."""
        out = asdict(self)
        scope, over = out.pop("window_scope"), out.pop("window_over_words")
        if scope is not WindowScope.TICKET:
            out["window_scope"] = scope.value
        if over:
            out["window_over_words"] = over
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SegmentPolicy:
        unknown = sorted(set(obj) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"input_policy.segmentation: unknown field(s) {unknown}")
        return cls(**dict(obj))

    @classmethod
    def from_name(cls, name: str, segmenter_version: str) -> SegmentPolicy:
        """Parse a report label back (`whole`, `sent1`, `sent2m2`, `sent2+win12/6`,
        `whole+win16/8`, `sent2+swin10/2`, `sent2+swin6/3over14`)."""
        m = re.fullmatch(r"(whole|sent(\d+)(?:m(\d+))?)(?:\+(s?)win(\d+)/(\d+)(?:over(\d+))?)?",
                         name)
        if m is None:
            raise ValueError(f"segmentation {name!r}: use whole, sentN or sentNmK, either "
                             f"with +winW/S (windows over the ticket) or, after sentN, "
                             f"+swinW/S (windows inside sentences), each optionally "
                             f"followed by overN (only spans of more than N words)")
        words, stride, over = int(m.group(5) or 0), int(m.group(6) or 0), int(m.group(7) or 0)
        scope = WindowScope.SENTENCE if m.group(4) else WindowScope.TICKET
        if m.group(1) == "whole":
            return cls(segmenter=NO_SEGMENTER, max_sentences=1, window_words=words,
                       window_stride=stride, window_scope=scope, window_over_words=over)
        min_words = int(m.group(3)) if m.group(3) is not None else DEFAULT_MIN_WORDS
        return cls(segmenter_version=segmenter_version, max_sentences=int(m.group(2)),
                   min_words=min_words, window_words=words, window_stride=stride,
                   window_scope=scope, window_over_words=over)

    @classmethod
    def whole_only(cls) -> SegmentPolicy:
        return cls(segmenter=NO_SEGMENTER, segmenter_version="", max_sentences=1)


def installed_version(segmenter: str) -> str | None:
    """The installed distribution version of a segmenter, or None when it is missing.

    First from the `<name>-<version>.dist-info` folder beside the very package that will be
    imported (the installed-project layout PyPA specifies): `importlib.metadata` costs tens of
    milliseconds of imports (email, zipfile, csv) at every router start. Anything else (no such
    folder, several of them) asks `importlib.metadata`."""
    if segmenter == NO_SEGMENTER:
        return ""
    from importlib.util import find_spec

    spec = find_spec(segmenter)
    if spec is None or not spec.origin:
        return None
    site = Path(spec.origin).parent.parent
    found = [d.name[len(segmenter) + 1:-len(".dist-info")]
             for d in site.glob(f"{segmenter}-*.dist-info")]
    if len(found) == 1 and "-" not in found[0]:
        return found[0]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(segmenter)
    except PackageNotFoundError:
        return None


def current_policy(**settings: Any) -> SegmentPolicy:
    """A policy naming the segmenter version installed here (what train records)."""
    found = installed_version(SENTENCEX)
    if found is None:
        raise SegmenterUnavailable("sentencex is not installed (pip install sentencex)")
    return SegmentPolicy(segmenter_version=found, **settings)


def check_segmenter(policy: SegmentPolicy) -> None:
    """Raise `SegmenterUnavailable` unless the exact segmenter version of the policy is here:
    another version may cut sentences differently, and the receipt pinned these cuts."""
    found = installed_version(policy.segmenter)
    if found is None:
        raise SegmenterUnavailable(f"the bundle's input policy segments with "
                                   f"{policy.segmenter}=={policy.segmenter_version}, which is "
                                   f"not installed")
    if found != policy.segmenter_version:
        raise SegmenterUnavailable(f"the bundle's input policy segments with "
                                   f"{policy.segmenter}=={policy.segmenter_version}; "
                                   f"{found} is installed")


SentenceSplitter = Callable[[str, str], Sequence[tuple[int, int]]]


@lru_cache(maxsize=1)
def _sentencex() -> Any:
    from sentencex import get_sentence_boundaries

    return get_sentence_boundaries


def sentencex_spans(text: str, language: str) -> list[tuple[int, int]]:
    """Sentence spans from sentencex (code-point offsets, covering the text)."""
    return [(int(b["start_index"]), int(b["end_index"]))
            for b in _sentencex()(language, text)]


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    s, e = start + lead, end - trail
    return (s, e) if s < e else None


def sentence_units(text: str, policy: SegmentPolicy,
                   splitter: SentenceSplitter = sentencex_spans) -> list[tuple[int, int]]:
    """Sentences (and lines), trimmed, with short fragments merged into a neighbour."""
    pieces: list[tuple[int, int]] = []
    for start, end in splitter(text, policy.language):
        cuts = [start]
        if policy.split_lines:
            cuts += [start + m.end() for m in re.finditer(r"\n+", text[start:end])]
        cuts.append(end)
        for a, b in zip(cuts, cuts[1:]):
            span = _trimmed(text, a, b)
            if span is not None:
                pieces.append(span)
    merged: list[tuple[int, int]] = []
    pending: int | None = None  # start of short fragments that also open the next unit
    for s, e in pieces:
        if len(_WORD.findall(text[s:e])) < policy.min_words:
            if merged:  # a sign-off joins the sentence before it ...
                merged[-1] = (merged[-1][0], e)
            pending = s if pending is None else pending  # ... and an opener the one after it
            continue
        merged.append((s if pending is None else pending, e))
        pending = None
    if not merged and pieces:  # only short fragments: one unit
        merged.append((pieces[0][0], pieces[-1][1]))
    return merged


def word_windows(text: str, policy: SegmentPolicy, start: int = 0,
                 end: int | None = None) -> list[tuple[int, int]]:
    """Overlapping windows of `window_words` whitespace-separated words of `text[start:end]`
    (last one flush; none when the span is no longer than one window, or than
    `window_over_words`)."""
    if not policy.window_words:
        return []
    words = [(start + a, start + b) for a, b in
             (m.span() for m in _TOKEN.finditer(text[start:end]))]
    w, stride = policy.window_words, policy.window_stride
    if len(words) <= max(w, policy.window_over_words):
        return []
    starts = list(range(0, len(words) - w + 1, stride))
    if starts[-1] != len(words) - w:
        starts.append(len(words) - w)
    return [(words[i][0], words[i + w - 1][1]) for i in starts]


class TooManySegments(ValueError):
    """The ticket would need more segments than the policy allows."""


def segment_ticket(text: str, policy: SegmentPolicy,
                   splitter: SentenceSplitter = sentencex_spans) -> tuple[Segment, ...]:
    """The whole ticket first, then sentence runs, then word windows; no span twice."""
    whole = (0, len(text))
    spans: list[tuple[SegmentKind, tuple[int, int]]] = [(SegmentKind.WHOLE, whole)]
    units = [whole]
    if policy.segmenter != NO_SEGMENTER:
        units = sentence_units(text, policy, splitter)
        for k in range(1, policy.max_sentences + 1):
            for i in range(len(units) - k + 1):
                spans.append((SegmentKind.SENTENCE, (units[i][0], units[i + k - 1][1])))
    scopes = units if policy.window_scope is WindowScope.SENTENCE else [whole]
    for s, e in scopes:
        spans += [(SegmentKind.WINDOW, span) for span in word_windows(text, policy, s, e)]
    seen: set[tuple[int, int]] = set()
    out: list[Segment] = []
    for kind, (s, e) in spans:
        if (s, e) in seen:
            continue
        seen.add((s, e))
        out.append(Segment(kind, s, e))
    if len(out) > policy.max_segments:
        raise TooManySegments(f"{len(out)} segments > max_segments {policy.max_segments}")
    return tuple(out)
