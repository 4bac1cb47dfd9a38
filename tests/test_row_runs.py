"""`per_row` scoring: a segment scores the same in every ticket it appears in, each distinct
row of a batch of tickets runs once, and bundles from before it keep their digest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from intakegate.bundle import Manifest
from intakegate.scoring.encoding import PER_ROW, PER_TICKET, InputPolicy, policy_digest
from intakegate.scoring.ticket_score import (
    RowLogits,
    ScoreSpec,
    Windows,
    score_texts,
    score_ticket,
)
from tests.runtime_helpers import bundle_score_spec, bundle_tokenizer, manifest

RISK = "The thief changed my password and my email address overnight"
ROUTINE = "Where is my parcel please, tracking has not moved since Monday"


class BatchScaled:
    """A stand-in for a dynamically quantized graph: a row's logits depend on the largest row
    of the whole run (one activation scale per input tensor). It records every run."""

    def __init__(self) -> None:
        self.runs: list[Windows] = []

    def __call__(self, w: Windows) -> np.ndarray:
        self.runs.append(w)
        ids = w.input_ids.astype(np.float64) * w.attention_mask
        sums = ids.sum(axis=1)
        s = 4.0 * sums / max(1.0, float(sums.max())) - 3.0
        return np.stack([-s, s], axis=1).astype(np.float32)


def _spec(bundle: Path, model_runs: str) -> ScoreSpec:
    spec = bundle_score_spec(bundle)
    return replace(spec, policy=replace(spec.policy, model_runs=model_runs), blend=None)


def _segment_score(scored: Any, text: str, ticket: str) -> float:
    return next(p.encoder for p in scored.segments
                if ticket[p.segment.start:p.segment.end] == text)


def test_a_segment_scores_the_same_alone_and_beside_another_request(tiny_bundle: Path) -> None:
    tokenizer = bundle_tokenizer(tiny_bundle)
    pair = f"{ROUTINE}. {RISK}."
    per_row = _spec(tiny_bundle, PER_ROW)
    alone = score_ticket(BatchScaled(), tokenizer, ROUTINE + ".", per_row)
    beside = score_ticket(BatchScaled(), tokenizer, pair, per_row)
    assert _segment_score(beside, ROUTINE + ".", pair) == _segment_score(alone, ROUTINE + ".",
                                                                         ROUTINE + ".")
    # the shared padded runs of bundles before `per_row` let the risky request move it
    per_ticket = _spec(tiny_bundle, PER_TICKET)
    alone = score_ticket(BatchScaled(), tokenizer, ROUTINE + ".", per_ticket)
    beside = score_ticket(BatchScaled(), tokenizer, pair, per_ticket)
    assert _segment_score(beside, ROUTINE + ".", pair) != _segment_score(alone, ROUTINE + ".",
                                                                         ROUTINE + ".")


def test_each_distinct_row_runs_alone_once_for_a_batch_of_tickets(tiny_bundle: Path) -> None:
    tokenizer = bundle_tokenizer(tiny_bundle)
    texts = [f"{ROUTINE}. {RISK}.", f"Hi team,\n\n{ROUTINE}.\n\nThanks, Sam", ROUTINE + "."]
    spec = _spec(tiny_bundle, PER_ROW)
    engine = BatchScaled()
    batched = score_texts(engine, tokenizer, texts, spec, workers=2)
    assert all(w.input_ids.shape[0] == 1 for w in engine.runs)
    keys = [tuple(w.input_ids[0]) for w in engine.runs]
    assert len(keys) == len(set(keys)) < sum(s.rows for s in batched)
    one_by_one = [score_ticket(BatchScaled(), tokenizer, t, spec) for t in texts]
    assert [s.score for s in batched] == [s.score for s in one_by_one]


def test_a_failed_run_is_never_cached_and_each_ticket_reports_it(tiny_bundle: Path) -> None:
    tokenizer = bundle_tokenizer(tiny_bundle)
    spec = _spec(tiny_bundle, PER_ROW)

    def broken(w: Windows) -> np.ndarray:
        raise RuntimeError("kernel fault")

    cache = RowLogits()
    first = score_ticket(broken, tokenizer, ROUTINE, spec, cache=cache)
    assert first.score is None and "inference_error" in first.detail and len(cache) == 0
    scored = score_texts(broken, tokenizer, [ROUTINE, RISK], spec)
    assert all(s.score is None and s.failure is not None for s in scored)


def test_model_runs_is_written_only_when_per_row_so_older_digests_hold(
        tiny_bundle: Path) -> None:
    old = InputPolicy()
    assert "model_runs" not in old.to_json()
    assert policy_digest(InputPolicy.from_json(old.to_json())) == policy_digest(old)
    new = replace(old, model_runs=PER_ROW)
    assert new.to_json()["model_runs"] == PER_ROW and policy_digest(new) != policy_digest(old)
    assert InputPolicy.from_json(new.to_json()) == new
    with pytest.raises(ValueError, match="input_policy.model_runs"):
        InputPolicy(model_runs="per_batch")
    # a trained bundle pins per_row; the manifest refuses an unknown value, naming the field
    m = manifest(tiny_bundle)
    assert m["input_policy"]["model_runs"] == PER_ROW
    m["input_policy"]["model_runs"] = "per_batch"
    with pytest.raises(Exception, match="input_policy"):
        Manifest.parse(m)


def test_validation_runs_a_row_once_across_segmentations(tiny_bundle: Path) -> None:
    """Training weighs several segmentations on the same validation tickets; the whole ticket
    is every segmentation's first segment, so its row runs once for all of them, and each
    segmentation's candidates are what it gives scored on its own."""
    from intakegate.contract.dataset import TicketRow
    from intakegate.scoring.segments import SegmentPolicy, current_policy
    from intakegate.train.selection import evaluate_candidates
    from intakegate.vocab import Route

    tokenizer = bundle_tokenizer(tiny_bundle)
    spec = _spec(tiny_bundle, PER_ROW)
    fixtures = [json.loads(line) for line in
                (tiny_bundle / "receipt" / "fixtures.jsonl").read_text().splitlines()]
    singles = [f for f in fixtures if ":" not in f["slice"]][:40]
    rows = [TicketRow(f["id"], f["text"], Route.HUMAN_REVIEW_NOW if f["gold"] == 1
                      else Route.GUARDED_AGENT, f["slice"], account=f.get("account"))
            for f in singles]
    texts = [r.text for r in rows]
    required = sorted({r.slice for r in rows if r.gold_route is Route.HUMAN_REVIEW_NOW})
    segmentations = [SegmentPolicy.from_name(n, current_policy().segmenter_version)
                     for n in ("whole", "sent2+win8/4")]

    def evaluate(segs: list[SegmentPolicy], engine: BatchScaled) -> tuple[list, dict]:
        kept: dict = {}
        cands = evaluate_candidates(engine, tokenizer, spec, segs, rows, texts,
                                    required, None, (1.0,), 0.25, workers=2,
                                    keep=lambda v: kept.__setitem__(v.segmentation, v))
        return cands, kept

    together = BatchScaled()
    both, kept = evaluate(segmentations, together)
    keys = [tuple(w.input_ids[0]) for w in together.runs]
    assert len(keys) == len(set(keys))  # no row ran twice, over both segmentations
    engines = [BatchScaled() for _ in segmentations]
    alone = [c for seg, e in zip(segmentations, engines) for c in evaluate([seg], e)[0]]
    assert len(together.runs) == sum(len(e.runs) for e in engines) - len(engines[0].runs)
    assert [(c.segmentation, c.threshold, c.fp_single) for c in both] == [
        (c.segmentation, c.threshold, c.fp_single) for c in alone]
    assert kept["whole"].logit_range == kept["sent2+win8/4"].logit_range  # over every row run
