"""The one scoring function: a prepared ticket in, its score (or why it has none) out.

Train (validation scores, threshold, receipt, test report), the export re-gates, the golden
self-test and the router all call `score_ticket`, so a receipt is computed exactly the way
tickets are served. A ticket's score is the maximum over its segments (`scoring.segments`:
the whole ticket, sentence runs, word windows) of the segment's own blended score: the encoder
on the segment's windows (max over windows), blended with the lexical model on the segment's
own text. Neither component is diluted by the rest of the ticket.

All rows of one ticket go through the model together (one `Run` for an ordinary ticket; a long
ticket's rows are grouped by length so padding at most doubles the work), and nothing else
shares those runs: a dynamically quantized graph takes one activation scale per input tensor, so
a score must depend on the ticket alone, never on batch neighbours.

What serving must not take on trust is checked here for every stage: token ids inside the
model's vocabulary before `Run`, the output's shape and dtype, finite logits (a `-inf` logit
would otherwise give a clean 0.0), and one failure per ticket instead of an exception.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from intakegate.parallel import map_in_order
from intakegate.routing import Reason
from intakegate.scoring.encoding import InputPolicy, Windows, padded_ids, prepare_text
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
    """Rows grouped into model runs: by length, so padding stays within PAD_SLACK."""
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


def score_ticket(logits: LogitsFn, tokenizer: Any, text: str, spec: ScoreSpec,
                 call: LogitsCall = direct_call,
                 splitter: SentenceSplitter = sentencex_spans) -> Scored:
    """Score one prepared ticket (a text that passed `prepare_text`). Never raises for a
    segmenter, tokenizer or model fault: those become the ticket's failure."""
    policy = spec.policy
    try:
        segments = segment_ticket(text, spec.segmentation, splitter)
    except TooManySegments as exc:
        return _failed(Reason.OVER_LENGTH_CAP, f"over_segment_cap: {exc}")
    except Exception as exc:  # noqa: BLE001 - a segmenter fault routes the ticket to a person
        log.warning("segmenter error: %s", type(exc).__name__)
        return _failed(Reason.MODEL_ERROR, f"segmenter_error: {type(exc).__name__}")
    seg_texts = [text[s.start:s.end] for s in segments]
    try:
        encodings = tokenizer.encode_batch(seg_texts)
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
    types = [w.type_ids for w in rows]
    n_whole = owner.count(0)  # the whole ticket is segment 0, so its rows come first
    unk_ratio = None
    if spec.unk_id is not None:
        unk_id = spec.unk_id
        total = sum(sum(m) for m in masks[:n_whole])
        unk = sum(sum(1 for t, m in zip(r, mk) if m and t == unk_id)
                  for r, mk in zip(ids[:n_whole], masks[:n_whole]) if unk_id in r)
        unk_ratio = unk / total if total else None
    n_rows = len(rows)
    if any(min(r) < 0 or max(r) >= spec.vocab_size for r in ids if r):
        return _failed(Reason.MODEL_ERROR, "token_id_out_of_range: checked before Run",
                       n_rows, unk_ratio)

    row_logits = np.empty((n_rows, spec.n_labels), dtype=np.float64)
    for run in _runs([len(r) for r in ids]):
        batch = padded_ids([ids[r] for r in run], [masks[r] for r in run],
                           [types[r] for r in run], range(len(run)), (1,) * len(run))
        try:
            raw = call(logits, batch)
        except TimeoutError:
            return _failed(Reason.TIMEOUT, "timeout: the late result is discarded", n_rows,
                           unk_ratio)
        except Exception as exc:  # noqa: BLE001 - any inference fault routes to a person
            log.warning("inference error: %s: %s", type(exc).__name__, str(exc)[:200])
            return _failed(Reason.MODEL_ERROR, f"inference_error: {type(exc).__name__}",
                           n_rows, unk_ratio)
        out = np.asarray(raw) if raw is not None else np.empty((0,))
        if out.dtype.kind != "f" or out.shape != (len(run), spec.n_labels):
            return _failed(Reason.INVALID_SCORE,
                           f"score_out_of_range: output {out.dtype}{list(out.shape)} != "
                           f"float[{len(run)}, {spec.n_labels}]", n_rows, unk_ratio)
        row_logits[run] = out.astype(np.float64)
    if not np.isfinite(row_logits).all():
        kind = "score_nan" if np.isnan(row_logits).any() else "score_nonfinite"
        return _failed(Reason.INVALID_SCORE, f"{kind}: non-finite logits", n_rows, unk_ratio)
    if rows_out_of_range(row_logits, spec.logit_range).any():  # saturated but finite
        return _failed(Reason.INVALID_SCORE, "logit_out_of_range: logits far outside the range "
                                             "seen at gate time", n_rows, unk_ratio)

    owners = np.asarray(owner)
    lexical: np.ndarray | None = None
    with np.errstate(all="ignore"):
        per_row = human_review_score(row_logits, spec.positive)
        encoder = np.full(len(segments), -np.inf)
        np.maximum.at(encoder, owners, per_row)
        blended = encoder
        if spec.blend is not None:
            try:
                lexical = spec.blend.lexical.scores(seg_texts)
                blended = blend_scores(encoder, lexical, spec.blend.encoder_weight)
            except Exception as exc:  # noqa: BLE001 - a lexical fault routes to a person
                log.warning("score blend error: %s", type(exc).__name__)
                return _failed(Reason.MODEL_ERROR, f"blend_error: {type(exc).__name__}",
                               n_rows, unk_ratio)
    parts = tuple(SegmentScore(seg, float(encoder[i]),
                               None if lexical is None else float(lexical[i]),
                               float(blended[i])) for i, seg in enumerate(segments))
    if not all(valid_score(p.score) for p in parts):
        bad = next(p.score for p in parts if not valid_score(p.score))
        return _failed(Reason.INVALID_SCORE, f"score_out_of_range: {bad!r}", n_rows, unk_ratio)
    best = int(np.argmax(blended))
    seg_rows = np.flatnonzero(owners == best)
    max_window = int(np.argmax(per_row[seg_rows]))
    return Scored(parts[best].score, None, n_whole, max_window, unk_ratio, "", best,
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
                progress: Callable[[int, int], None] | None = None, workers: int = 1
                ) -> list[Scored]:
    """Prepare and score raw tickets (train, re-gates, self-test), `workers` at once; a text
    the input policy refuses gets its refusal reason as the failure. Each ticket is scored on
    its own, so the scores do not depend on `workers` (`intakegate.parallel`); `logits` and
    `logits` is then called from several threads, and each thread encodes with its own copy of
    `tokenizer` (a `tokenizers.Tokenizer` refuses a call while another thread's is running)."""
    local = threading.local()

    def own_tokenizer() -> Any:
        if workers <= 1:
            return tokenizer
        if getattr(local, "tokenizer", None) is None:
            local.tokenizer = copy.deepcopy(tokenizer)
        return local.tokenizer

    def one(text: object) -> Scored:
        prepared = prepare_text(text, spec.policy)
        if prepared.text is None:
            return _failed(prepared.reason or Reason.MODEL_ERROR, prepared.detail)
        return score_ticket(logits, own_tokenizer(), prepared.text, spec)

    return map_in_order(one, texts, workers, done=progress)
