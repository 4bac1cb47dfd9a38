"""Score prepared tickets through the shared path and check everything the model hands back.

The steps are the ones `intakegate.encoding.score_texts` uses for training and the export gates
(`encode_windows`, `human_review_score`, `max_over_windows`); this module adds what serving must
not take on trust: token ids inside the model's vocabulary before `Run`, the output's shape and
dtype, finite logits (a `-inf` logit would otherwise give a clean 0.0 score), and a per-ticket
failure instead of one exception for the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from intakegate.encoding import InputPolicy, Windows, encode_windows, max_over_windows
from intakegate.gate import valid_score
from intakegate.logit_range import rows_out_of_range
from intakegate.routing import Reason
from intakegate.scoring import human_review_score

log = logging.getLogger(__name__)
LogitsCall = Callable[[Callable[[Windows], Any], Windows], Any]


@dataclass(frozen=True)
class Scored:
    """A ticket's score, or the reason it has none. `detail` starts with a sub-code."""

    score: float | None
    failure: Reason | None
    windows: int = 0
    max_window: int | None = None
    unk_ratio: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class ScoreSpec:
    """What the scorer needs to know about the bundle's model and tokenizer.

    `per_ticket`: run one ticket (all its windows) per `Run`, so a ticket's score is a function
    of the ticket alone. Dynamically quantized (int8) graphs compute one activation scale per
    input tensor, so batch neighbours move a score by up to 0.1 on the tiny model; fp32 kernels
    move it by about 1e-8, which is enough to flip a ticket whose score equals the threshold.
    The router always sets it; gates should score with `score_texts(batch_size=1)` to match.
    """

    policy: InputPolicy
    positive: tuple[int, ...]
    n_labels: int
    vocab_size: int
    unk_id: int | None
    per_ticket: bool = False
    blend: Any = None  # intakegate.lexical.ScoreBlend, applied after max over windows
    logit_range: Any = None  # intakegate.logit_range.LogitRange recorded at gate time


def direct_call(fn: Callable[[Windows], Any], windows: Windows) -> Any:
    """Run the backend in the caller's thread (no time budget)."""
    return fn(windows)


def _fail(n: int, reason: Reason, detail: str, windows: Sequence[int] | None = None
          ) -> list[Scored]:
    per = list(windows) if windows is not None else [0] * n
    return [Scored(None, reason, per[i], detail=detail) for i in range(n)]


def _one_by_one(backend: Any, tokenizer: Any, texts: Sequence[str], spec: ScoreSpec,
                call: LogitsCall) -> list[Scored]:
    out: list[Scored] = []
    for text in texts:
        out.extend(score_prepared(backend, tokenizer, [text], spec, call))
    return out


def score_prepared(backend: Any, tokenizer: Any, texts: Sequence[str], spec: ScoreSpec,
                   call: LogitsCall = direct_call) -> list[Scored]:
    """Score texts that already passed `prepare_text`; one `Scored` per text, never raises
    for a tokenizer or model fault (those become per-ticket failures)."""
    n = len(texts)
    if n == 0:
        return []
    if spec.per_ticket and n > 1:
        return _one_by_one(backend, tokenizer, texts, spec, call)
    try:
        windows = encode_windows(tokenizer, texts, spec.policy)
    except OverflowError as exc:
        if n > 1:
            return _one_by_one(backend, tokenizer, texts, spec, call)
        return _fail(1, Reason.OVER_LENGTH_CAP, f"over_window_cap: {exc}")
    except Exception as exc:  # noqa: BLE001 - a tokenizer fault routes the ticket to a person
        if n > 1:
            return _one_by_one(backend, tokenizer, texts, spec, call)
        log.warning("tokenizer error: %s", type(exc).__name__)
        return _fail(1, Reason.MODEL_ERROR, f"tokenizer_error: {type(exc).__name__}")

    per_text = list(windows.windows_per_text)
    ids = windows.input_ids
    out_of_range = (ids < 0) | (ids >= spec.vocab_size)
    if out_of_range.any():
        if n > 1:
            return _one_by_one(backend, tokenizer, texts, spec, call)
        return _fail(1, Reason.MODEL_ERROR, "token_id_out_of_range: checked before Run",
                     per_text)

    try:
        raw = call(backend.logits, windows)
    except TimeoutError:
        return _fail(n, Reason.TIMEOUT, "timeout: the late result is discarded", per_text)
    except Exception as exc:  # noqa: BLE001 - any inference fault routes to a person
        log.warning("inference error: %s: %s", type(exc).__name__, str(exc)[:200])
        return _fail(n, Reason.MODEL_ERROR, f"inference_error: {type(exc).__name__}", per_text)

    rows = ids.shape[0]
    logits = np.asarray(raw) if raw is not None else np.empty((0,))
    if logits.dtype.kind != "f" or logits.shape != (rows, spec.n_labels):
        return _fail(n, Reason.INVALID_SCORE,
                     f"score_out_of_range: output {logits.dtype}{list(logits.shape)} != "
                     f"float[{rows}, {spec.n_labels}]", per_text)
    logits64 = logits.astype(np.float64)
    bad_rows = ~np.isfinite(logits64).all(axis=1)
    far_rows = rows_out_of_range(logits64, spec.logit_range)  # M14: saturated but finite
    unusable = bad_rows | far_rows
    with np.errstate(all="ignore"):
        per_window = human_review_score(np.where(unusable[:, None], 0.0, logits64),
                                        spec.positive)
        per_window = np.where(unusable, np.nan, per_window)
        scores = max_over_windows(per_window, windows.owner, n)
    if spec.blend is not None:
        try:
            with np.errstate(all="ignore"):
                scores = spec.blend.apply(scores, texts)
        except Exception as exc:  # noqa: BLE001 - a lexical fault routes to a person
            log.warning("score blend error: %s", type(exc).__name__)
            return _fail(n, Reason.MODEL_ERROR, f"blend_error: {type(exc).__name__}",
                         per_text)

    attended = windows.attention_mask.astype(bool)
    out: list[Scored] = []
    start = 0
    for i in range(n):
        k = per_text[i]
        rows_i = slice(start, start + k)
        start += k
        unk_ratio = None
        if spec.unk_id is not None:
            mask = attended[rows_i]
            total = int(mask.sum())
            unk = int(((ids[rows_i] == spec.unk_id) & mask).sum())
            unk_ratio = unk / total if total else None
        if bad_rows[rows_i].any():
            kind = "score_nan" if np.isnan(logits64[rows_i]).any() else "score_nonfinite"
            out.append(Scored(None, Reason.INVALID_SCORE, k, unk_ratio=unk_ratio,
                              detail=f"{kind}: non-finite logits"))
            continue
        if far_rows[rows_i].any():
            out.append(Scored(None, Reason.INVALID_SCORE, k, unk_ratio=unk_ratio,
                              detail="logit_out_of_range: logits far outside the range seen "
                                     "at gate time"))
            continue
        score = float(scores[i])
        if not valid_score(score):
            out.append(Scored(None, Reason.INVALID_SCORE, k, unk_ratio=unk_ratio,
                              detail=f"score_out_of_range: {score!r}"))
            continue
        best = int(np.argmax(per_window[rows_i]))
        out.append(Scored(score, None, k, best, unk_ratio))
    return out
