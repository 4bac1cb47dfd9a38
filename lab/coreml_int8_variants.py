"""Which Core ML int8 weight recipe re-passes the receipt? (validation only)

Quantizes the exported bundle's own coreml-fp16 package several ways with coremltools'
`linear_quantize_weights`, scores the bundle's frozen validation inventory with the numpy MIL
reference executor through the one scoring path (as `intakegate gate` does off macOS), and gates
each run with the one gate. Prints, per variant: gate reason, required positives missed, the
smallest margin of a required positive over the pinned threshold (log-odds), the largest score
change against torch-fp32 (the export's drift report), the package size and the seconds it took
to score the inventory. The test split is not opened.

Variants: the shipped recipe (symmetric int8 per output channel), the same with a zero point
per channel (`linear`), and either of them with the embedding tables, or the attention's
query/key/value weights, kept fp16. A second argument keeps only the variants whose label
contains it. Every variant keeps the package's macOS 13 deployment
target (per-block int8 would need macOS 15).

    .venv/bin/python lab/coreml_int8_variants.py bundles/refund-intake/refund-intake-minilm-v3
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from intakegate.bundle import verify_bundle
from intakegate.export.backends import MilReferenceLogits
from intakegate.export.coreml_export import int8_config
from intakegate.export.materialize import materialize
from intakegate.export.mil_reference import _quiet_coremltools, one_blas_thread
from intakegate.export.regate import load_inventory, scoring_inputs
from intakegate.parallel import cpu_workers
from intakegate.scoring.ticket_score import score_texts
from variant_gate import gate_variant


VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "symmetric per channel (shipped)": ("linear_symmetric", ()),
    "asymmetric per channel (zero point)": ("linear", ()),
    "symmetric, embeddings fp16": ("linear_symmetric", ("embeddings",)),
    "symmetric, query/key/value fp16": ("linear_symmetric", ("query", "key", "value")),
    "asymmetric, embeddings fp16": ("linear", ("embeddings",)),
    "asymmetric, query/key/value fp16": ("linear", ("query", "key", "value")),
}


def main(bundle_dir: str, only: str = "") -> None:
    ct = _quiet_coremltools()
    import coremltools.optimize.coreml as cto

    bundle = verify_bundle(Path(bundle_dir))
    inventory = load_inventory(bundle)
    tokenizer, spec = scoring_inputs(bundle)
    ids = list(inventory.spec.fixture_ids)
    texts = [inventory.texts[f] for f in ids]
    tmp = Path(tempfile.mkdtemp(prefix="coreml-int8-variants-"))
    fp16_dir = materialize(bundle, bundle.manifest.artifacts["coreml-fp16"].path, tmp / "fp16")
    fp16 = ct.models.MLModel(str(fp16_dir), skip_model_load=True)
    workers = cpu_workers()
    try:
        for label, (mode, keep) in VARIANTS.items():
            if only and only not in label:
                continue
            config, kept = int8_config(cto, fp16, mode, keep)
            out = tmp / f"v-{mode}-{len(keep)}.mlpackage"
            cto.linear_quantize_weights(fp16, config=config).save(str(out))
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            logits = MilReferenceLogits(out)
            started = time.perf_counter()
            with one_blas_thread():
                scores = [s.score for s in score_texts(logits, tokenizer, texts, spec,
                                                       workers=workers)]
            seconds = time.perf_counter() - started
            print(json.dumps({**gate_variant(bundle, inventory, label, scores),
                              "weights_kept_fp16": len(kept),
                              "size_mb": round(size / 1e6, 2),
                              "score_inventory_s": round(seconds, 1), "workers": workers}),
                  flush=True)
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
