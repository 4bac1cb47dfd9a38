"""Reports of the release checklist: threshold sweep, gate report, test report, shadow plan.

Figures come from the scores passed in; nothing here chooses anything. Outputs are called
scores, never probabilities.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intakegate.contract.dataset import Dataset, TicketRow
from intakegate.extras import require
from intakegate.receipt.evaluation import evaluate_at
from intakegate.receipt.evidence import Labelled, composition, shape_costs, source_evidence
from intakegate.receipt.threshold import (
    calibration_buckets,
    confusion_at,
    expected_calibration_error,
)


def _plt() -> Any:
    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "train")


def sweep_thresholds(scores: Sequence[float]) -> list[float]:
    grid = set(np.round(np.linspace(0.0, 1.0, 101), 4).tolist())
    grid.update(float(s) for s in scores)
    return sorted(t for t in grid if 0.0 < t <= 1.0)


def write_sweep(rows: Sequence[TicketRow], scores: Sequence[float], required: Sequence[str],
                threshold: float, out_dir: Path, title: str) -> None:
    """threshold -> TP/FP/FN/recall overall and per required slice, as CSV and PNG."""
    golds = [r.gold for r in rows]
    thresholds = sweep_thresholds(scores)
    header = ["threshold", "tp", "fp", "fn", "tn", "recall", "fp_rate"]
    for s in required:
        header += [f"{s}_caught", f"{s}_missed"]
    table = []
    for t in thresholds:
        p = confusion_at(scores, golds, t)
        line: list[Any] = [f"{t:.6f}", p.tp, p.fp, p.fn, p.tn, f"{p.recall:.4f}",
                           f"{p.fp_rate:.4f}"]
        for s in required:
            pos = [sc for r, sc in zip(rows, scores) if r.slice == s and r.gold]
            caught = sum(1 for sc in pos if sc >= t)
            line += [caught, len(pos) - caught]
        table.append(line)
    with (out_dir / "threshold_sweep.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(table)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ts = [float(x[0]) for x in table]
    ax.plot(ts, [float(x[5]) for x in table], label="positive recall")
    ax.plot(ts, [float(x[6]) for x in table], label="routine tickets sent to people (FP rate)")
    for s in required:
        idx = header.index(f"{s}_caught")
        pos = table[0][idx] + table[0][idx + 1]
        ax.plot(ts, [x[idx] / pos if pos else 1.0 for x in table], linestyle=":",
                label=f"recall {s}")
    ax.axvline(threshold, color="black", linestyle="--", label=f"chosen {threshold:.4f}")
    ax.set_xlabel("threshold (score >= threshold goes to human_review_now)")
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(out_dir / "threshold_sweep.png", dpi=110)
    plt.close(fig)


def _auc(scores: Sequence[float], golds: Sequence[int]) -> tuple[float | None, float | None]:
    metrics = require("sklearn.metrics", "train")
    if len(set(golds)) < 2:
        return None, None
    return (float(metrics.roc_auc_score(golds, scores)),
            float(metrics.average_precision_score(golds, scores)))


def figures(rows: Sequence[TicketRow], scores: Sequence[float], threshold: float,
            required: Sequence[str]) -> dict[str, Any]:
    out = evaluate_at(rows, scores, threshold, required)
    out["roc_auc"], out["pr_auc"] = _auc(scores, [r.gold for r in rows])
    return out


def evidence_figures(rows: Sequence[TicketRow], scores: Sequence[float], threshold: float,
                     required: Sequence[str]) -> dict[str, Any]:
    """What a split proves at one threshold (reported, never gated): distinct source positives,
    misses and the miss-rate bound; single and pair FP and the composition overhead."""
    labelled = [Labelled(r.id, r.slice, r.gold, float(s) >= threshold)
                for r, s in zip(rows, scores)]
    evidence = source_evidence(labelled, set(required))
    comp = composition(labelled)
    return {"evidence": {**evidence.to_json(), "line": evidence.overall.line()},
            "composition": comp.to_json(),
            "shapes": {c.kind: c.to_json() for c in shape_costs(labelled)}}


def data_shape_figures(rows: Sequence[TicketRow], scores: Sequence[float], threshold: float,
                       required: Sequence[str]) -> dict[str, Any]:
    """Per dataset `shape` tag (how the ticket is written), the single tickets' required
    recall and routine FP at one threshold; empty when the data has no shape tags."""
    out: dict[str, Any] = {}
    for shape in sorted({r.shape for r in rows if r.shape}):
        picked = [(r, float(s) >= threshold) for r, s in zip(rows, scores) if r.shape == shape]
        caught = [flag for r, flag in picked if r.gold == 1 and r.slice in required]
        flagged = [flag for r, flag in picked if r.gold == 0]
        out[shape] = {"tickets": len(picked), "required_positives": len(caught),
                      "required_missed": len(caught) - sum(caught),
                      "required_recall": sum(caught) / len(caught) if caught else None,
                      "routine": len(flagged),
                      "routine_fp": sum(flagged) / len(flagged) if flagged else None}
    return out


def data_shape_lines(shapes: Mapping[str, Any]) -> list[str]:
    if not shapes:
        return []
    lines = ["", "## Per data shape (single tickets, shipped score)", "",
             "| Shape | Tickets | Required missed | Required recall | Routine to people |",
             "|---|---|---|---|---|"]
    for name, f in shapes.items():
        fp = "-" if f["routine_fp"] is None else f"{f['routine_fp']:.1%} of {f['routine']}"
        lines.append(f"| `{name}` | {f['tickets']} | {f['required_missed']}/"
                     f"{f['required_positives']} | {_fmt(f['required_recall'])} | {fp} |")
    return lines


def logit_of(scores: Sequence[float]) -> np.ndarray:
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(s) - np.log1p(-s)


def calibration(val_scores: Sequence[float], val_golds: Sequence[int],
                test_scores: Sequence[float], test_golds: Sequence[int]) -> dict[str, Any]:
    """10 buckets + ECE on test; a temperature fitted on validation, reported as a diagnostic."""
    edges = np.linspace(0, 1, 11)
    buckets = calibration_buckets(test_scores, test_golds, edges)
    z_val = logit_of(val_scores)
    y_val = np.asarray(val_golds)
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(50.0), 500)):
        p = 1 / (1 + np.exp(-z_val / t))
        nll = -np.mean(y_val * np.log(np.clip(p, 1e-12, 1)) +
                       (1 - y_val) * np.log(np.clip(1 - p, 1e-12, 1)))
        if nll < best_nll:
            best_t, best_nll = float(t), float(nll)
    scaled = 1 / (1 + np.exp(-logit_of(test_scores) / best_t))
    return {
        "buckets": [{"range": b.name, "n": b.n, "mean_score": b.mean_score,
                     "observed_rate": b.observed_rate} for b in buckets],
        "ece": expected_calibration_error(test_scores, test_golds, 10),
        "temperature_fitted_on_validation": best_t,
        "ece_after_temperature": expected_calibration_error(scaled.tolist(), test_golds, 10),
        "note": "Diagnostic only. Routing uses the raw score and the frozen threshold; the "
                "temperature is never applied at serving time.",
    }


def write_reliability_png(cal: Mapping[str, Any], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    xs = [b["mean_score"] for b in cal["buckets"] if b["n"]]
    ys = [b["observed_rate"] for b in cal["buckets"] if b["n"]]
    ns = [b["n"] for b in cal["buckets"] if b["n"]]
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    ax.scatter(xs, ys, s=[20 + 3 * n for n in ns], label="test buckets (size = rows)")
    ax.plot(xs, ys)
    ax.set_xlabel("mean score in bucket")
    ax.set_ylabel("observed share routed human_review_now")
    ax.set_title(f"{title}\nECE {cal['ece']:.3f}; a score is not a probability")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def render_test_report(dataset: Dataset, report: Mapping[str, Any]) -> str:
    lines = [
        f"# Test report: {dataset.name} / {report['bundle_version']}", "",
        f"Opened once, after the threshold was frozen on validation "
        f"({report['threshold']:.6f}). Test split `{report['split_manifest_version']}`, "
        f"{report['encoder']['n']} single tickets and {report['composed']['n']} composed ones "
        f"(each required positive joined with routine test tickets before and after it, and "
        f"routine pairs). Segmentation `{report['segmentation']}`. The model output is a "
        f"**score**, not a probability.", "",
        "| Scoring | Threshold (from validation) | Tickets | Required missed | "
        "Positive recall | FP rate (routine to people) | Precision | ROC-AUC | PR-AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    blend = report.get("score_blend")
    names = {"shipped": "shipped: max over segments" + (
                 f", encoder + TF-IDF blend (encoder weight {blend['encoder_weight']:g})"
                 if blend else ""),
             "encoder_alone": "encoder alone, max over segments",
             "whole_ticket": "whole ticket only (no segments)"}
    rows: list[tuple[str, str, Mapping[str, Any]]] = []
    for key, comp in (report.get("components") or {}).items():
        rows.append((names.get(key, key), "single", comp["single"]))
        rows.append((names.get(key, key), "composed", comp["composed"]))
    rows += [(name, "single", f) for name, f in report["baselines"].items()]
    for name, kind, f in rows:
        lines.append(
            f"| {name} | {f['threshold']:.6f} | {kind} | {f['required_missed']}/"
            f"{f['required_positives']} | {f['positive_recall']:.3f} | "
            f"{f['false_positive_rate']:.3f} | {f['precision']:.3f} | {_fmt(f['roc_auc'])} | "
            f"{_fmt(f['pr_auc'])} |")
    lines += _evidence_lines(report)
    lines += data_shape_lines(report.get("data_shapes") or {})
    lines += ["", "## Recall per required slice (shipped score)", ""]
    for s, f in [*report["encoder"]["slices"].items(), *report["composed"]["slices"].items()]:
        missed = ", ".join(f"`{i}`" for i in f["missed_ids"]) or "none"
        lines.append(f"- `{s}`: {f['caught']}/{f['positives']} (recall {f['recall']:.3f}); "
                     f"missed: {missed}")
    if report.get("missed_rows"):
        lines += ["", "Missed required positives on test:", ""]
        for m in report["missed_rows"]:
            lines.append(f"- `{m['id']}` ({m['slice']}, score {m['score']:.4f}): {m['text']}")
    lines += ["", "## Against the baselines", "", report["baseline_verdict"], ""]
    cal = report["calibration"]
    lines += ["## Calibration diagnostic (test)", "",
              f"ECE {cal['ece']:.4f}. Temperature fitted on validation: "
              f"{cal['temperature_fitted_on_validation']:.3f} (ECE after: "
              f"{cal['ece_after_temperature']:.4f}). {cal['note']}", "",
              "| Bucket | n | mean score | observed |", "|---|---|---|---|"]
    for b in cal["buckets"]:
        lines.append(f"| {b['range']} | {b['n']} | {_fmt(b['mean_score'])} | "
                     f"{_fmt(b['observed_rate'])} |")
    lines.append("")
    return "\n".join(lines)


def _evidence_lines(report: Mapping[str, Any]) -> list[str]:
    """The evidence and composition of the shipped score on test: figures, never a gate."""
    if "evidence" not in report:
        return []
    ev, comp = report["evidence"], report["composition"]
    lines = ["", "## What test shows (reported, never gated)", "",
             f"- Evidence: {ev['line']} (distinct source positives; a composed copy counts for "
             "its source, missed when any copy is).",
             "", "| Required slice | Sources | Missed | Miss rate at most (95%) |",
             "|---|---|---|---|"]
    for name, s in ev["slices"].items():
        lines.append(f"| `{name}` | {s['sources']} | {s['missed']} | "
                     f"{s['miss_rate_bound']:.1%} |")
    if comp["pair_fp"] is not None:
        lines += ["", f"- Routine single FP {comp['single_fp']:.1%}, routine pairs "
                      f"{comp['pair_fp']:.1%}; their parts explain "
                      f"{comp['pair_fp_explained_by_parts']:.1%}: composition overhead "
                      f"{comp['composition_overhead']:+.3f}."]
    for kind, cost in (report.get("shapes") or {}).items():
        fig = (report.get("shape_copies") or {}).get(kind) or {}
        lines.append(f"- Shape `{kind}`: routine copies to people {cost['fp']:.1%} against "
                     f"{cost['single_fp']:.1%} for the tickets they wrap (overhead "
                     f"{cost['shape_overhead']:+.3f}); required copies missed "
                     f"{fig.get('required_missed', '-')}/{fig.get('required_positives', '-')}.")
    lines.append(f"- Model rows per ticket (segment cost): {report['rows_per_ticket']:.2f}.")
    return lines


def baseline_verdict(encoder: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]],
                     baseline_val: Mapping[str, Mapping[str, Any]]) -> str:
    """Say plainly when a baseline meets the gate with fewer false positives."""
    sentences = []
    for name, f in baselines.items():
        val = baseline_val[name]
        gate_ok = val["meets_fp_budget"] and val["at_chosen_threshold"]["required_missed"] == 0
        cheaper = f["false_positive_rate"] < encoder["false_positive_rate"]
        no_worse = f["required_missed"] <= encoder["required_missed"]
        if gate_ok and cheaper and no_worse:
            sentences.append(
                f"**{name} meets the validation gate and, on test, sends fewer routine tickets to "
                f"people ({f['false_positive_rate']:.1%} vs {encoder['false_positive_rate']:.1%})"
                f" with no more required misses ({f['required_missed']} vs "
                f"{encoder['required_missed']}).** On this data the encoder has not earned its "
                "complexity over it.")
        else:
            sentences.append(
                f"{name}: validation gate {'met' if gate_ok else 'not met'}; on test "
                f"{f['required_missed']} required missed, FP rate "
                f"{f['false_positive_rate']:.1%} (shipped: {encoder['required_missed']} missed, "
                f"{encoder['false_positive_rate']:.1%}).")
    return " ".join(sentences)


def render_shadow_plan(dataset: Dataset, bundle_version: str) -> str:
    guide = dataset.guide
    floors = "\n".join(f"| `{s}` | {guide.shadow_floors.get(s, 1.0):.0%} |"
                       for s in sorted(guide.required_slices))
    return f"""# Shadow-monitor plan: {dataset.name} / {bundle_version}

The bundle runs in shadow first: it scores every new ticket and records its proposed route, while
people keep deciding. Live routing does not change until this plan has been met.

1. Log each decision with `Router(..., shadow_log=PATH)`: ticket id, score, proposed route, bundle
   version and time (no ticket text unless asked).
2. Keep the human decision for each ticket (`id`, `gold_route`, `slice`) in a JSONL file.
3. Run `intakegate shadow report LOG --decisions human.jsonl` weekly and on every 200 reviewed
   tickets. It prints, per required slice, the share of human-escalated tickets the bundle also
   escalated, against these floors:

| Required slice | Floor (share caught) |
|---|---|
{floors}

4. Any required slice under its floor: the report exits 1 and says "rollback recommended". Roll back
   with `intakegate bundles rollback {dataset.name}` (the whole bundle: model, tokenizer, threshold,
   fallback), and route everything to people until a new bundle passes its receipt.
5. Do not wait for average accuracy to fall: one missed required ticket below the floor is enough.
"""
