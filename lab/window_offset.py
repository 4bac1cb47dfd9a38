"""Do windows need a stricter bar than sentences? (validation only, no retraining)

The windows' own false positives set banking77's routine FP rate: some 8-word window of 14.4%
of routine single tickets looks risky out of context. This study scores the bundle's frozen
validation inventory (single and composed) once per segmentation with its torch-fp32 model
through the one scoring path, keeps every segment's encoder score, and then, without
rescoring, lowers each *window*'s blended score by an offset in log-odds before the maximum
(whole ticket and sentences unchanged), at every encoder weight of the recipe. For each
(segmentation, weight, offset) it applies the train-time threshold rule (lowest required
positive, composed included, less the margin) and reports the routine FP rate (all, single,
routine pairs). An offset of `inf` drops the windows. The test split is not opened; an offset
found here would ship only as a recipe setting chosen again on validation.

    .venv/bin/python lab/window_offset.py bundles/banking77/b77-minilm-v3 \
        sent2+win8/4 sent2+win6/3
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

import intakegate.runtime  # noqa: F401 - before onnxruntime's telemetry (see README)
from intakegate.bundle import Artifact, verify_bundle
from intakegate.receipt.composed import is_composed_slice
from intakegate.scoring.encoding import prepare_text
from intakegate.export.backends import gate_backend
from intakegate.export.regate import load_inventory, scoring_inputs
from intakegate.scoring.lexical import blend_from_entry, blend_scores, log_odds
from intakegate.receipt.threshold import choose_threshold
from intakegate.scoring.segments import SegmentKind, SegmentPolicy
from intakegate.scoring.ticket_score import progress_log, score_texts

OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, math.inf)


def main(bundle_dir: str, names: list[str]) -> None:
    bundle = verify_bundle(Path(bundle_dir))
    m = bundle.manifest
    inventory = load_inventory(bundle)
    tokenizer, spec = scoring_inputs(bundle)
    blend = blend_from_entry(m.score_blend, bundle.read)
    config = json.loads(bundle.read("docs/training_config.json"))["config"]
    margin = float(config["threshold_margin"])
    ids = list(inventory.spec.fixture_ids)
    ref = {r.fixture_id: r for r in inventory.reference.rows}
    golds = [ref[f].gold for f in ids]
    slices = [ref[f].slice for f in ids]
    required = set(inventory.spec.required_slices)
    required_all = required | {f"composed:{s}" for s in required}
    prepared = [prepare_text(inventory.texts[f], m.input_policy).text or inventory.texts[f]
                for f in ids]
    routine_single = np.asarray([g == 0 and not is_composed_slice(s)
                                 for g, s in zip(golds, slices)])
    routine_pair = np.asarray([g == 0 and is_composed_slice(s) for g, s in zip(golds, slices)])
    version = m.input_policy.segmentation.segmenter_version if m.input_policy.segmentation \
        else ""
    backend = gate_backend(Artifact.TORCH_FP32, bundle)
    results = []
    with backend:
        for name in names:
            seg = SegmentPolicy.from_name(name, version)
            seg_spec = replace(spec, policy=replace(spec.policy, segmentation=seg), blend=None)
            scored = score_texts(backend, tokenizer, prepared, seg_spec, workers=backend.workers,
                                 progress=progress_log(f"scoring {seg.name}"))
            failed = [f for f, s in zip(ids, scored) if s.failure is not None]
            if failed:
                raise SystemExit(f"{len(failed)} validation tickets could not be scored: "
                                 f"{failed[:5]}")
            texts = [[p[p_seg.segment.start:p_seg.segment.end] for p_seg in s.segments]
                     for p, s in zip(prepared, scored)]
            flat = sorted({t for ts in texts for t in ts})
            lexical = dict(zip(flat, blend.lexical.scores(flat).tolist())) if blend else {}
            for w in sorted({float(x) for x in config.get("blend_weights") or (1.0,)},
                            reverse=True):
                blended = []
                for s, ts in zip(scored, texts):
                    enc = np.asarray([p.encoder for p in s.segments])
                    z = log_odds(enc if not lexical or w >= 1.0 else
                                 blend_scores(enc, np.asarray([lexical[t] for t in ts]), w))
                    window = np.asarray([p.segment.kind == SegmentKind.WINDOW
                                         for p in s.segments])
                    blended.append((z, window))
                for offset in OFFSETS:
                    z_ticket = np.asarray([np.max(np.where(win, z - offset, z)) if
                                           not math.isinf(offset) else np.max(z[~win])
                                           for z, win in blended])
                    scores = 1.0 / (1.0 + np.exp(-z_ticket))
                    th = choose_threshold(scores.tolist(), golds, slices, required_all, margin)
                    flagged = scores >= th
                    row = {"segmentation": seg.name, "encoder_weight": w, "window_offset": offset,
                           "threshold": round(th, 6),
                           "fp_rate": round(float(flagged[routine_single | routine_pair].mean()), 4),
                           "fp_single": round(float(flagged[routine_single].mean()), 4),
                           "fp_pair": round(float(flagged[routine_pair].mean()), 4)}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    out = Path(__file__).resolve().parents[1] / "runs" / "lab" / f"window-offset-{bundle.bundle_version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bundle": bundle.bundle_version, "margin": margin,
                               "offsets_logit": [str(o) for o in OFFSETS],
                               "candidates": results}, indent=1) + "\n")
    best = sorted(results, key=lambda r: r["fp_rate"])[:10]
    print("best:", *[json.dumps(r) for r in best], f"written {out}", sep="\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
