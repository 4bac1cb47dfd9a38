"""How many model rows and tokens each segmentation gives banking77's test tickets.

    .venv/bin/python lab/segment_rows.py BUNDLE [SEGMENTATION ...]

Why: the router's p50 against a bare whole-ticket session depends on how often the median
ticket is one row. Each test ticket is prepared as served (`prepare_text`), cut by each
segmentation (default: the three of banking77's recipe) and tokenized with the bundle's own
tokenizer; prints the share of one-row tickets and the median rows and tokens per ticket.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from intakegate.benchmarks.inputs import load_texts
from intakegate.bundle import verify_bundle
from intakegate.bundle.paths import TOKENIZER
from intakegate.scoring.encoding import configure_tokenizer, prepare_text
from intakegate.scoring.segments import SegmentPolicy, segment_ticket, sentencex_spans

RECIPE = ("sent2+win8/4", "sent2+swin6/3", "sent2+swin6/3over12")


def main(bundle: str, names: list[str]) -> None:
    from tokenizers import Tokenizer

    verified = verify_bundle(Path(bundle))
    policy = verified.manifest.input_policy
    tokenizer = configure_tokenizer(
        Tokenizer.from_str(verified.read(TOKENIZER).decode("utf-8")), policy)
    texts = [t for t in (prepare_text(x, policy).text for x in load_texts(verified).test) if t]
    out = {"bundle": verified.manifest.bundle_version, "tickets": len(texts), "segmentations": {}}
    for name in names or RECIPE:
        seg = SegmentPolicy.from_name(name, "")
        rows, tokens = [], []
        for text in texts:
            parts = [text[s.start:s.end] for s in segment_ticket(text, seg, sentencex_spans)]
            encodings = [w for e in tokenizer.encode_batch(parts) for w in (e, *e.overflowing)]
            rows.append(len(encodings))
            tokens.append(sum(len(w.ids) for w in encodings))
        out["segmentations"][name] = {
            "one_row_share": round(sum(r == 1 for r in rows) / len(rows), 3),
            "median_rows": statistics.median(rows), "mean_rows": round(statistics.fmean(rows), 3),
            "median_tokens": statistics.median(tokens)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
