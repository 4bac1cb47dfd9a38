#!/usr/bin/env bash
# Validation-only search for a smaller student of refund-intake-minilm-v3 (the test split stays
# closed: --validation-only). Each variant distils from the teacher bundle with the shipped
# recipe, its segmentations cut to the teacher's choice (and whole, for the reports), and one
# change: the teacher layers it starts from, the weight of the teacher term, the epochs.
# Usage: bash lab/student_search.sh [TEACHER] [OUT]   (OUT default runs/lab/student-search)
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=${1:-bundles/refund-intake/refund-intake-minilm-v3}
OUT=${2:-runs/lab/student-search}
CLI=${CLI:-.venv/bin/intakegate}
mkdir -p "$OUT/data"
cp data/refund-intake/* "$OUT/data/"
.venv/bin/python - "$OUT/data/dataset.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["recipe"]["segmentations"] = ["whole", "sent4+win12/6"]
json.dump(d, open(sys.argv[1], "w"), indent=2)
PY
variant() {  # name, then train options
  name=$1; shift
  "$CLI" train --dataset "$OUT/data/dataset.json" --bundle-version "student-$name" \
    --bundles-dir "$OUT/bundles" --reports-dir "$OUT/reports" --validation-only --force \
    --teacher "$TEACHER" "$@" > "$OUT/$name.log" 2>&1 || true  # held exits 1
  grep -E "candidate sent4\+win12/6 w=1.00|best .* validation fp" "$OUT/$name.log" \
    | sed "s/^/$name: /"
}
variant l135-w0.9 --student-layers 1,3,5 --distill-weight 0.9
variant l0245-w0.9 --student-layers 0,2,4,5 --distill-weight 0.9
variant l135-w0.5 --student-layers 1,3,5 --distill-weight 0.5
variant l135-w0 --student-layers 1,3,5 --distill-weight 0
