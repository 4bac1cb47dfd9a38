"""Baseline report on validation: does a cheap model already meet the routing gate?"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.contract.dataset import Dataset
from intakegate.contract.split import SplitResult
from intakegate.jsonio import write_json
from intakegate.receipt.evaluation import evaluate_at
from intakegate.receipt.threshold import choose_threshold
from intakegate.train.baselines import KeywordRule, TfidfLogReg
from intakegate.train.config import TrainConfig
from intakegate.vocab import Split

log = logging.getLogger(__name__)


def baseline_scores(dataset: Dataset, split: SplitResult, seed: int = 0
                    ) -> dict[str, dict[Split, np.ndarray]]:
    """Scores of both baselines on validation and test; trained on train only."""
    train_rows = split.rows(dataset, Split.TRAIN)
    rule = KeywordRule(tuple(dataset.baseline_keywords) or KeywordRule().terms)
    tfidf = TfidfLogReg(seed).fit(train_rows)
    out: dict[str, dict[Split, np.ndarray]] = {}
    for model in (rule, tfidf):
        out[model.name] = {
            s: model.scores([r.text for r in split.rows(dataset, s)])
            for s in (Split.VALIDATION, Split.TEST)
        }
    return out


def evaluate_baseline(dataset: Dataset, split: SplitResult, scores: np.ndarray,
                      margin_logit: float = TrainConfig().threshold_margin) -> dict[str, Any]:
    """Validation figures at the natural 0.5 cut and at the rule-chosen threshold.

    The rule is the encoder's: the lowest required-positive score, less the same log-odds margin.
    """
    rows = split.rows(dataset, Split.VALIDATION)
    required = dataset.guide.required_slices
    chosen = choose_threshold(scores, [r.gold for r in rows], [r.slice for r in rows], required,
                              margin_logit)
    at_chosen = evaluate_at(rows, scores, chosen, required)
    return {
        "at_0.5": evaluate_at(rows, scores, 0.5, required),
        "at_chosen_threshold": at_chosen,
        "chosen_threshold": chosen,
        "meets_fp_budget": chosen > 0 and at_chosen["false_positive_rate"] <= dataset.guide.fp_budget,
    }


def render_md(dataset: Dataset, report: dict[str, Any]) -> str:
    lines = [
        f"# Baseline report: {dataset.name}", "",
        f"Validation split `{report['split_manifest_version']}`, label version "
        f"`{report['label_version']}`. Baselines are fitted on the train split only. The "
        "threshold is chosen by the rule the encoder uses: the lowest validation score of a "
        "required-slice positive, lowered by the same log-odds margin "
        f"({TrainConfig().threshold_margin}); a score equal to it escalates. "
        f"False-positive budget from the label guide: {dataset.guide.fp_budget:.0%} of routine "
        "tickets.", "",
        "| Baseline | Threshold | Required missed | Positive recall | FP rate (routine) | "
        "Precision | Meets FP budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["baselines"].items():
        for label, key in (("0.5", "at_0.5"), ("chosen", "at_chosen_threshold")):
            e = r[key]
            lines.append(
                f"| {name} @ {label} | {e['threshold']:.4f} | {e['required_missed']}/"
                f"{e['required_positives']} | {e['positive_recall']:.3f} | "
                f"{e['false_positive_rate']:.3f} | {e['precision']:.3f} | "
                f"{'yes' if key == 'at_chosen_threshold' and r['meets_fp_budget'] else '-'} |")
    lines += ["", "## Recall per required slice (missed ids)", ""]
    for name, r in report["baselines"].items():
        for label, key in (("0.5", "at_0.5"), ("chosen", "at_chosen_threshold")):
            lines.append(f"**{name} @ {label}**")
            lines.append("")
            for s, f in r[key]["slices"].items():
                missed = ", ".join(f"`{i}`" for i in f["missed_ids"]) or "none"
                lines.append(f"- `{s}`: {f['caught']}/{f['positives']} "
                             f"(recall {f['recall']:.3f}); missed: {missed}")
            lines.append("")
    lines.append("A threshold of 0 sends every ticket to people: the keyword rule's scores are 0 "
                 "or 1, so the threshold rule can only keep its recall by escalating everything.")
    return "\n".join(lines) + "\n"


def write_baseline_report(dataset: Dataset, split: SplitResult, out_dir: Path,
                          seed: int = 0) -> dict[str, Any]:
    """Train both baselines, evaluate on validation, write JSON and Markdown."""
    log.info("baselines: fitting on %d train rows", len(split.ids(Split.TRAIN)))
    scores = baseline_scores(dataset, split, seed)
    report = {
        "dataset": dataset.name,
        "dataset_version": dataset.dataset_version,
        "label_version": dataset.guide.label_version,
        "split_manifest_version": split.version,
        "fp_budget": dataset.guide.fp_budget,
        "split": "validation",
        "baselines": {name: evaluate_baseline(dataset, split, s[Split.VALIDATION])
                      for name, s in scores.items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "baseline_report.json", report)
    (out_dir / "baseline_report.md").write_text(render_md(dataset, report), encoding="utf-8")
    return report
