#!/usr/bin/env bash
# Validation-only recipe search for refund-intake (the test split stays closed: --validation-only).
# Each variant is the shipped recipe with one change, trained from scratch with seed 13 and
# weighed on the composed validation receipt; results go to runs/lab/ (ignored), not to bundles/.
# Usage: bash lab/recipe_search.sh [OUT]   (about 7 min a variant, 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/lab/refund-recipe-search}
CLI=${CLI:-.venv/bin/intakegate}
mkdir -p "$OUT/data"
cp data/refund-intake/* "$OUT/data/"
variant() {  # name, then a Python expression that edits the recipe dict `r`
  .venv/bin/python - "$OUT/data/dataset.json" "$OUT/data/dataset-$1.json" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["recipe"]
r["segmentations"] = ["whole", "sent4+win12/6"]
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], "w"), indent=2)
PY
  "$CLI" train --dataset "$OUT/data/dataset-$1.json" --bundle-version "search-$1" \
    --bundles-dir "$OUT/bundles" --reports-dir "$OUT/reports" --validation-only --force \
    > "$OUT/$1.log" 2>&1 || true  # a held candidate exits 1; its figures are in the log
  grep -E "candidate sent4\+win12/6 w=1.00|best .* validation fp" "$OUT/$1.log" | sed "s/^/$1: /"
}
variant epochs4 'r["epochs"] = 4'
variant epochs6 'r["epochs"] = 6'
variant epochs8 'r["epochs"] = 8'
variant epochs4-segshare0.5 'r["epochs"] = 4; r["segment_shares"] = [0.5]'
variant epochs4-composed1.0 'r["epochs"] = 4; r["composed_shares"] = [1.0]'
