"""Validation only: are routine pairs flagged through a part that is flagged alone? (see lab/README.md)"""
import torch; torch.set_num_threads(1)
from intakegate.contract.dataset import load_dataset
from intakegate.contract.split import split_dataset
from intakegate.vocab import Split
from intakegate.receipt.composed import composed_fixtures, ComposedRecipe, parse_composed_id
from intakegate.runtime.router import Router
from intakegate.scoring.encoding import prepare_text
from intakegate.scoring.ticket_score import score_ticket
from tokenizers import Tokenizer
ds = load_dataset("refund-intake"); sp = split_dataset(ds)
rows = sp.rows(ds, Split.VALIDATION); byid = {r.id: r for r in rows}
pairs = [c for c in composed_fixtures(rows, ds.guide.required_slices, ComposedRecipe(seed=13)) if c.gold == 0]
r = Router.load("bundles/refund-intake/refund-intake-minilm-v2", artifact="torch-fp32", allow_held_for_measurement=True, threads=1)
e = r._engine; tok = Tokenizer.from_str(e.tokenizer_json); th = e.threshold
def sc(t):
    p = prepare_text(t, e.spec.policy).text
    s = score_ticket(e.backend.logits, tok, p, e.spec)
    best = max(s.segments, key=lambda q: q.score)
    return s.score, p, best
single = {x.id: sc(x.text)[0] for x in rows if x.gold == 0}
n = both = cross = inpart = 0; union = 0
for c in pairs:
    a, b, j = parse_composed_id(c.id)
    s, p, best = sc(c.text)
    u = single[a] >= th or single[b] >= th
    union += u
    if s >= th:
        n += 1
        la = len(byid[a].text.strip())
        seg = best.segment
        if seg.start < la < seg.end - 1 and seg.kind.value != "whole": cross += 1
        elif seg.kind.value == "whole": both += 1
        else: inpart += 1
print(f"threshold {th:.4f} singles flagged {sum(v>=th for v in single.values())}/{len(single)} pairs flagged {n}/{len(pairs)} union-of-parts {union}; deciding segment: whole {both}, crosses the join {cross}, inside one part {inpart}")
