"""Validation-only: more segmentations on the held refund v2 model (no retraining; see
lab/README.md). Writes runs/lab/segexp_<segmentations>.json."""
import json, sys, logging, torch
torch.set_num_threads(1)
from dataclasses import replace
from pathlib import Path
from intakegate.contract.dataset import load_dataset
from intakegate.contract.split import split_dataset
from intakegate.vocab import Split
from intakegate.receipt.composed import composed_fixtures, ComposedRecipe
from intakegate.runtime.router import Router
from intakegate.scoring.segments import SegmentPolicy
from intakegate.scoring.encoding import prepare_text
from intakegate.train.selection import evaluate_candidates
from tokenizers import Tokenizer
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
ds = load_dataset("refund-intake"); sp = split_dataset(ds)
rows = sp.rows(ds, Split.VALIDATION)
allrows = list(rows) + composed_fixtures(rows, ds.guide.required_slices, ComposedRecipe(seed=int(__import__("os").environ.get("SEED","13"))))
r = Router.load("bundles/refund-intake/refund-intake-minilm-v2", artifact="torch-fp32", allow_held_for_measurement=True, threads=1)
e = r._engine
tok = Tokenizer.from_str(e.tokenizer_json)
from intakegate.scoring.encoding import configure_tokenizer
configure_tokenizer(tok, e.spec.policy)
prepared = [prepare_text(x.text, e.spec.policy).text for x in allrows]
lex = e.spec.blend.lexical if e.spec.blend else None
print("blend", e.spec.blend.__class__, [a for a in dir(e.spec.blend) if not a.startswith('_')])
ver = e.spec.policy.segmentation.segmenter_version
segs = [SegmentPolicy.from_name(n, ver) for n in sys.argv[1:]]
res = evaluate_candidates(e.backend.logits, tok, replace(e.spec, blend=None), segs, allrows, prepared, ds.guide.required_slices, lex, [1.0,0.9,0.8,0.7,0.6,0.5], 0.25)
out = Path("runs/lab"); out.mkdir(parents=True, exist_ok=True)
json.dump([c.to_json() for c in res], open(out / ("segexp_%s.json" % "_".join(sys.argv[1:]).replace("/","-")), "w"), indent=1)
for c in sorted(res, key=lambda c: c.held.key())[:8]: print(c)
