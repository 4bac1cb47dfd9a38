"""More segmentations for a trained bundle, on its own validation inventory (no retraining).

Scores the bundle's frozen validation fixtures (single and composed) with its torch-fp32 model
through the one scoring path, for each segmentation named on the command line, blends each
segment with the bundle's own lexical model at every encoder weight of its training recipe, and
applies the train-time threshold rule (`train.selection.evaluate_candidates`). Prints the
candidates by routine false-positive rate and writes them to runs/lab/ (merged with an earlier
run's file for the same bundle). The test
split is not opened. A segmentation found here ships only through a retrain that lists it in
the recipe (validation then chooses among the recipe's candidates as usual).

    .venv/bin/python lab/segmentations.py bundles/banking77/b77-minilm-v3 \
        sent2+win6/3 sent1m2+win6/3 whole+win6/3 sent2+win5/2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import intakegate.runtime  # noqa: F401 - before onnxruntime's telemetry (see README)
from intakegate.bundle import Artifact, verify_bundle
from intakegate.contract.dataset import TicketRow
from intakegate.scoring.encoding import prepare_text
from intakegate.export.backends import gate_backend
from intakegate.export.regate import load_inventory
from intakegate.scoring.lexical import blend_from_entry
from intakegate.scoring.segments import SegmentPolicy
from intakegate.scoring.ticket_score import ScoreSpec
from intakegate.train.selection import evaluate_candidates
from intakegate.vocab import Route


def main(bundle_dir: str, names: list[str]) -> None:
    bundle = verify_bundle(Path(bundle_dir))
    m = bundle.manifest
    inventory = load_inventory(bundle)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(bundle.read(m.tokenizer).decode("utf-8"))
    spec = ScoreSpec(m.input_policy, m.score_head.positive, len(m.score_head.labels),
                     tokenizer.get_vocab_size(with_added_tokens=True))
    blend = blend_from_entry(m.score_blend, bundle.read)
    config = json.loads(bundle.read("docs/training_config.json"))["config"]
    ref = {r.fixture_id: r for r in inventory.reference.rows}
    rows = [TicketRow(f, inventory.texts[f], Route.HUMAN_REVIEW_NOW if ref[f].gold else
                      Route.GUARDED_AGENT, ref[f].slice) for f in inventory.spec.fixture_ids]
    prepared = [prepare_text(r.text, m.input_policy).text or r.text for r in rows]
    version = m.input_policy.segmentation.segmenter_version if m.input_policy.segmentation \
        else ""
    segmentations = [SegmentPolicy.from_name(n, version) for n in names]
    backend = gate_backend(Artifact.TORCH_FP32, bundle)
    with backend:
        tried = evaluate_candidates(backend, tokenizer, spec, segmentations, rows, prepared,
                                    inventory.spec.required_slices,
                                    blend.lexical if blend else None,
                                    config.get("blend_weights") or (1.0,),
                                    float(config["threshold_margin"]), workers=backend.workers)
    fp_budget = json.loads(bundle.read("docs/gate_report.json")).get("fp_budget")
    out = Path(__file__).resolve().parents[1] / "runs" / "lab" / f"segmentations-{bundle.bundle_version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(out.read_text()) if out.exists() else {}
    known.update({f"{c.segmentation} w={c.encoder_weight:g}": c.to_json() for c in tried})
    out.write_text(json.dumps(dict(sorted(known.items())), indent=1) + "\n")
    print(f"fp budget {fp_budget}; written {out}")
    for c in sorted(tried, key=lambda c: c.held.key())[:12]:
        print(f"{c.segmentation:>18} w={c.encoder_weight:.1f}  held halves: missed "
              f"{c.held.missed}/{c.held.sources}, single fp {c.held.fp_single:.4f}  |  all: "
              f"threshold {c.threshold:.4f} single {c.fp_single:.4f}, pairs {c.fp_pair}, "
              f"overhead {c.composition_overhead}  composed recall at the single threshold "
              f"{c.composed_recall_at_single_threshold:.3f}  rows/ticket {c.rows_per_ticket:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
