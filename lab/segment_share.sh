#!/usr/bin/env bash
# Validation-only: the banking77 recipe (data/banking77/dataset.json) plus parts of routine train
# tickets as routine rows (`segment_shares`, cut like the scoring windows). Why: on b77-minilm-v3
# the routine false positives come from windows (single tickets scored whole: 1.9% at w=0.8;
# with 6-word windows: 14.5%), so the encoder is taught that the parts of a routine query are
# routine. The test split stays closed (--validation-only); output goes to runs/lab/ (ignored).
# Usage: bash lab/segment_share.sh [OUT]   (about 50 min, 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/lab/b77-segment-share}
CLI=${CLI:-.venv/bin/intakegate}
mkdir -p "$OUT/data"
cp data/banking77/* "$OUT/data/"
.venv/bin/python - "$OUT/data/dataset.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["recipe"]
r["segment_shares"] = [0.25]
r["augment_segmentation"] = "sent2+win6/3"
json.dump(d, open(sys.argv[1], "w"), indent=2)
PY
"$CLI" train --dataset "$OUT/data/dataset.json" --bundle-version b77-segshare \
  --bundles-dir "$OUT/bundles" --reports-dir "$OUT/reports" --validation-only --force \
  > "$OUT/train.log" 2>&1 || true  # a held candidate exits 1; its figures are in the log
grep -E "intakegate.train.(selection|pipeline)" "$OUT/train.log" | grep -v scored
