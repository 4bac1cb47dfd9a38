"""The one scoring function: a prepared ticket in, its score (or why it has none) out.

Train (validation scores, threshold, receipt, test report), the export re-gates, the golden
self-test and the router all call `score_ticket`, so a receipt is computed exactly the way
tickets are served. A ticket's score is the maximum over its segments (`scoring.segments`:
the whole ticket, sentence runs, word windows) of the segment's own blended score: the encoder
on the segment's windows (max over windows), blended with the lexical model on the segment's
own text. Neither component is diluted by the rest of the ticket.

How rows meet the model is the input policy's `model_runs`. `per_row` (every bundle trained
since it): each distinct row of a ticket runs alone, so its logits depend on its own tokens
and nothing else. A dynamically quantized graph takes one activation scale per input tensor,
and padding changes fp32 sums, so only a run of one row makes a segment score the same beside
a risky request as on its own, on every engine, to the bit; and because it does, a batch of
tickets (a receipt's pairs and shape copies share most of their segments) runs each distinct
row once (`RowLogits`). `per_ticket` (bundles trained before it, served as they were gated):
a ticket's rows, grouped by length, share padded runs, and nothing from other tickets joins
them. Either way a score depends on the ticket alone, never on batch neighbours.

What serving must not take on trust is checked here for every stage: token ids inside the
model's vocabulary before `Run`, the output's shape and dtype, finite logits (a `-inf` logit
would otherwise give a clean 0.0), and one failure per ticket instead of an exception.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from intakegate.parallel import map_in_order
from intakegate.routing import Reason
from intakegate.scoring.encoding import (
    PER_TICKET,
    InputPolicy,
    Prepared,
    Windows,
    padded_ids,
    prepare_text,
)
from intakegate.scoring.lexical import ScoreBlend, blend_scores
from intakegate.scoring.logit_range import LogitRange, rows_out_of_range
from intakegate.scoring.maths import human_review_score, valid_score
from intakegate.scoring.segments import (
    Segment,
    SegmentPolicy,
    SentenceSplitter,
    TooManySegments,
    segment_ticket,
    sentencex_spans,
)

log = logging.getLogger(__name__)
LogitsFn = Callable[[Windows], Any]
LogitsCall = Callable[[LogitsFn, Windows], Any]
MAX_ROWS_PER_RUN = 64
PAD_SLACK = 2.0  # a run's padded size may be at most this many times its real tokens


@dataclass(frozen=True)
class ScoreSpec:
    """What scoring needs to know about the bundle's model, tokenizer and blend."""

    policy: InputPolicy
    positive: tuple[int, ...]
    n_labels: int
    vocab_size: int
    unk_id: int | None = None
    blend: ScoreBlend | None = None
    logit_range: LogitRange | None = None  # recorded at gate time; None: a fixed bound only

    @property
    def segmentation(self) -> SegmentPolicy:
        return self.policy.segmentation or SegmentPolicy.whole_only()


@dataclass(frozen=True)
class SegmentScore:
    """One segment's components: the encoder (max over its windows), the lexical model (None
    without a blend) and the blended score the ticket's maximum is taken over."""

    segment: Segment
    encoder: float
    lexical: float | None
    score: float


@dataclass(frozen=True)
class Scored:
    """A ticket's score and the segment that decided it, or the reason it has none.

    `detail` starts with a sub-code. `windows` counts the windows of the whole ticket and
    `rows` every model row its segments needed (the cost); `max_window` is the riskiest window
    of the deciding segment.
    """

    score: float | None
    failure: Reason | None
    windows: int = 0
    max_window: int | None = None
    unk_ratio: float | None = None
    detail: str = ""
    decided_by: int | None = None
    segments: tuple[SegmentScore, ...] = ()
    rows: int = 0

    @property
    def deciding(self) -> SegmentScore | None:
        return None if self.decided_by is None else self.segments[self.decided_by]


def direct_call(fn: LogitsFn, windows: Windows) -> Any:
    """Run the backend in the caller's thread (no time budget)."""
    return fn(windows)


def _failed(reason: Reason, detail: str, rows: int = 0, unk_ratio: float | None = None
            ) -> Scored:
    return Scored(None, reason, rows, unk_ratio=unk_ratio, detail=detail, rows=rows)


def _runs(lengths: Sequence[int]) -> list[list[int]]:
    """`per_ticket` runs: a ticket's rows grouped by length, so padding stays within
    PAD_SLACK."""
    runs: list[list[int]] = []
    current: list[int] = []
    total = 0
    for r in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        n = lengths[r]
        if current and (len(current) >= MAX_ROWS_PER_RUN
                        or n * (len(current) + 1) > PAD_SLACK * (total + n)):
            runs.append(current)
            current, total = [], 0
        current.append(r)
        total += n
    if current:
        runs.append(current)
    return runs


RunFailure = tuple[Reason, str]  # why a run gave no logits, and the detail
RowKey = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class RowLogits:
    """Logits of the distinct rows already run alone, in `per_row` scoring, by their tokens:
    the numbers a later run of the same row would give. One cache belongs to one model; the
    threads of `score_texts` share it (single dict reads and writes), and so may several
    `score_texts` calls on the same model (training's segmentations, `rows=`)."""

    def __init__(self) -> None:
        self._rows: dict[RowKey, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: RowKey) -> np.ndarray | None:
        return self._rows.get(key)

    def put(self, key: RowKey, logits: np.ndarray) -> None:
        self._rows[key] = logits


@dataclass(frozen=True)
class _TicketRows:
    """A prepared ticket cut into segments and tokenized into model rows."""

    segments: tuple[Segment, ...]
    seg_texts: tuple[str, ...]
    ids: list[list[int]]
    masks: list[list[int]]
    types: list[list[int]]
    owner: list[int]
    unk_ratio: float | None

    @property
    def n_whole(self) -> int:
        return self.owner.count(0)  # the whole ticket is segment 0, so its rows come first

    def key(self, r: int) -> RowKey:
        return tuple(self.ids[r]), tuple(self.masks[r]), tuple(self.types[r])


def _ticket_rows(tokenizer: Any, text: str, spec: ScoreSpec, splitter: SentenceSplitter
                 ) -> _TicketRows | Scored:
    """The ticket's segments and model rows, or the failure that sends it to a person."""
    policy = spec.policy
    try:
        segments = segment_ticket(text, spec.segmentation, splitter)
    except TooManySegments as exc:
        return _failed(Reason.OVER_LENGTH_CAP, f"over_segment_cap: {exc}")
    except Exception as exc:  # noqa: BLE001 - a segmenter fault routes the ticket to a person
        log.warning("segmenter error: %s", type(exc).__name__)
        return _failed(Reason.MODEL_ERROR, f"segmenter_error: {type(exc).__name__}")
    seg_texts = tuple(text[s.start:s.end] for s in segments)
    try:
        encodings = tokenizer.encode_batch(list(seg_texts))
    except Exception as exc:  # noqa: BLE001 - a tokenizer fault routes the ticket to a person
        log.warning("tokenizer error: %s", type(exc).__name__)
        return _failed(Reason.MODEL_ERROR, f"tokenizer_error: {type(exc).__name__}")
    rows: list[Any] = []
    owner: list[int] = []
    for i, enc in enumerate(encodings):
        windows = [enc, *enc.overflowing]
        if len(windows) > policy.max_windows:
            return _failed(Reason.OVER_LENGTH_CAP, f"over_window_cap: segment {i} needs "
                                                   f"{len(windows)} windows > "
                                                   f"{policy.max_windows}")
        rows.extend(windows)
        owner.extend([i] * len(windows))
    # Read each encoding's lists once: every `Encoding.ids` access builds a new list.
    ids = [w.ids for w in rows]
    masks = [w.attention_mask for w in rows]
    out = _TicketRows(tuple(segments), seg_texts, ids, masks, [w.type_ids for w in rows],
                      owner, None)
    if spec.unk_id is None:
        return out
    n_whole, unk_id = out.n_whole, spec.unk_id
    total = sum(sum(m) for m in masks[:n_whole])
    unk = sum(sum(1 for t, m in zip(r, mk) if m and t == unk_id)
              for r, mk in zip(ids[:n_whole], masks[:n_whole]) if unk_id in r)
    return replace(out, unk_ratio=unk / total if total else None)


def _run_rows(logits: LogitsFn, call: LogitsCall, t: _TicketRows, picked: Sequence[int],
              runs: Sequence[Sequence[int]], spec: ScoreSpec) -> np.ndarray | RunFailure:
    """Logits of the rows `picked` (in that order), run as `runs` (positions in `picked`), or
    why the run failed (`RunFailure`)."""
    out = np.empty((len(picked), spec.n_labels), dtype=np.float64)
    for run in runs:
        rows = [picked[k] for k in run]
        batch = padded_ids([t.ids[r] for r in rows], [t.masks[r] for r in rows],
                           [t.types[r] for r in rows], range(len(rows)), (1,) * len(rows))
        try:
            raw = call(logits, batch)
        except TimeoutError:
            return Reason.TIMEOUT, "timeout: the late result is discarded"
        except Exception as exc:  # noqa: BLE001 - any inference fault routes to a person
            log.warning("inference error: %s: %s", type(exc).__name__, str(exc)[:200])
            return Reason.MODEL_ERROR, f"inference_error: {type(exc).__name__}"
        got = np.asarray(raw) if raw is not None else np.empty((0,))
        if got.dtype.kind != "f" or got.shape != (len(rows), spec.n_labels):
            return (Reason.INVALID_SCORE, "score_out_of_range: output "
                    f"{got.dtype}{list(got.shape)} != float[{len(rows)}, {spec.n_labels}]")
        out[list(run)] = got.astype(np.float64)
    return out


def _row_logits(logits: LogitsFn, call: LogitsCall, t: _TicketRows, spec: ScoreSpec,
                cache: RowLogits | None) -> tuple[np.ndarray | RunFailure, int]:
    """Every row's logits and the rows this ticket costs when served alone: all of them
    (`per_ticket`), or its distinct rows (`per_row`, where `cache` may already hold some)."""
    if spec.policy.model_runs == PER_TICKET:
        everything = list(range(len(t.ids)))
        return _run_rows(logits, call, t, everything, _runs([len(r) for r in t.ids]),
                         spec), len(everything)
    first: dict[RowKey, int] = {}
    for r in range(len(t.ids)):
        first.setdefault(t.key(r), r)
    known = {k: v for k in first if cache is not None and (v := cache.get(k)) is not None}
    todo = [r for k, r in first.items() if k not in known]
    ran = _run_rows(logits, call, t, todo, [[k] for k in range(len(todo))], spec)
    if isinstance(ran, tuple):
        return ran, len(first)
    for r, row in zip(todo, ran):
        known[t.key(r)] = row
        if cache is not None:
            cache.put(t.key(r), row)
    return np.stack([known[t.key(r)] for r in range(len(t.ids))]), len(first)


def score_ticket(logits: LogitsFn, tokenizer: Any, text: str, spec: ScoreSpec,
                 call: LogitsCall = direct_call,
                 splitter: SentenceSplitter = sentencex_spans,
                 cache: RowLogits | None = None) -> Scored:
    """Score one prepared ticket (a text that passed `prepare_text`). Never raises for a
    segmenter, tokenizer or model fault: those become the ticket's failure. `cache` (a batch
    of tickets scored with one `per_row` model) holds rows already run."""
    t = _ticket_rows(tokenizer, text, spec, splitter)
    if isinstance(t, Scored):
        return t
    unk_ratio = t.unk_ratio
    if any(min(r) < 0 or max(r) >= spec.vocab_size for r in t.ids if r):
        return _failed(Reason.MODEL_ERROR, "token_id_out_of_range: checked before Run",
                       len(t.ids), unk_ratio)
    row_logits, n_rows = _row_logits(logits, call, t, spec, cache)
    if isinstance(row_logits, tuple):
        reason, detail = row_logits
        return _failed(reason, detail, n_rows, unk_ratio)
    if not np.isfinite(row_logits).all():
        kind = "score_nan" if np.isnan(row_logits).any() else "score_nonfinite"
        return _failed(Reason.INVALID_SCORE, f"{kind}: non-finite logits", n_rows, unk_ratio)
    if rows_out_of_range(row_logits, spec.logit_range).any():  # saturated but finite
        return _failed(Reason.INVALID_SCORE, "logit_out_of_range: logits far outside the range "
                                             "seen at gate time", n_rows, unk_ratio)
    return _blended(t, row_logits, n_rows, spec)


def _blended(t: _TicketRows, row_logits: np.ndarray, n_rows: int, spec: ScoreSpec) -> Scored:
    """The ticket's score: each segment's encoder score (max over its rows) blended with the
    lexical model on its text; the maximum over segments decides."""
    owners = np.asarray(t.owner)
    lexical: np.ndarray | None = None
    with np.errstate(all="ignore"):
        per_row = human_review_score(row_logits, spec.positive)
        encoder = np.full(len(t.segments), -np.inf)
        np.maximum.at(encoder, owners, per_row)
        blended = encoder
        if spec.blend is not None:
            try:
                lexical = spec.blend.lexical.scores(list(t.seg_texts))
                blended = blend_scores(encoder, lexical, spec.blend.encoder_weight)
            except Exception as exc:  # noqa: BLE001 - a lexical fault routes to a person
                log.warning("score blend error: %s", type(exc).__name__)
                return _failed(Reason.MODEL_ERROR, f"blend_error: {type(exc).__name__}",
                               n_rows, t.unk_ratio)
    parts = tuple(SegmentScore(seg, float(encoder[i]),
                               None if lexical is None else float(lexical[i]),
                               float(blended[i])) for i, seg in enumerate(t.segments))
    if not all(valid_score(p.score) for p in parts):
        bad = next(p.score for p in parts if not valid_score(p.score))
        return _failed(Reason.INVALID_SCORE, f"score_out_of_range: {bad!r}", n_rows,
                       t.unk_ratio)
    best = int(np.argmax(blended))
    seg_rows = np.flatnonzero(owners == best)
    max_window = int(np.argmax(per_row[seg_rows]))
    return Scored(parts[best].score, None, t.n_whole, max_window, t.unk_ratio, "", best,
                  parts, n_rows)


def progress_log(label: str, every_s: float = 10.0) -> Callable[[int, int], None]:
    """A `progress` callback for `score_texts` that logs at most every `every_s` seconds."""
    import time

    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > every_s:
            log.info("%s: scored %d/%d", label, done, total)
            last[0] = now
    return report


def score_texts(logits: LogitsFn, tokenizer: Any, texts: Sequence[object], spec: ScoreSpec,
                progress: Callable[[int, int], None] | None = None, workers: int = 1,
                rows: RowLogits | None = None) -> list[Scored]:
    """Prepare and score raw tickets (train, re-gates, self-test), `workers` at once; a text
    the input policy refuses gets its refusal reason as the failure. Each ticket is scored on
    its own, so the scores do not depend on `workers` (`intakegate.parallel`); `logits` is then
    called from several threads, and each thread encodes with its own copy of `tokenizer` (a
    `tokenizers.Tokenizer` refuses a call while another thread's is running).

    With a `per_row` policy each distinct row of the batch runs once (`RowLogits`), alone, for
    the first ticket that needs it; the others read its logits, which are the very numbers
    their own run would give. `rows` carries those logits over from earlier calls on the same
    `logits` (a fresh cache without it)."""
    local = threading.local()
    prepared = [prepare_text(text, spec.policy) for text in texts]
    cache = (None if spec.policy.model_runs == PER_TICKET
             else RowLogits() if rows is None else rows)

    def own_tokenizer() -> Any:
        if workers <= 1:
            return tokenizer
        if getattr(local, "tokenizer", None) is None:
            local.tokenizer = copy.deepcopy(tokenizer)
        return local.tokenizer

    def one(p: Prepared) -> Scored:
        if p.text is None:
            return _failed(p.reason or Reason.MODEL_ERROR, p.detail)
        return score_ticket(logits, own_tokenizer(), p.text, spec, cache=cache)

    return map_in_order(one, prepared, workers, done=progress)
