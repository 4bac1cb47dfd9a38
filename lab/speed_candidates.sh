#!/usr/bin/env bash
# Issue 15 on banking77 (its floor is defined on banking77 test tickets): the held teacher and a
# 3-layer student distilled from it, each exported for measurement only (every artifact stays
# held: model_held) and benchmarked on this machine. The student's side-by-side column is built
# from the teacher's onnx-fp32: Optimum's default int8 of the fine-tuned model is what a user
# would build by hand. Run on a quiet machine; about 25 minutes on 2 cores once the teacher is
# trained (export 1 min, student train 16 min, two bench runs 5 min).
# Bundles go to bundles/banking77/, the train reports to runs/reports/ and the bench results to
# runs/bench/<device-name>/<bundle_version>/ (the CLI's defaults; all ignored by git).
# Usage: bash lab/speed_candidates.sh [TEACHER_VERSION] [STUDENT_VERSION] \
#            [STUDENT_LAYERS]
# (defaults b77-minilm-v5, b77-minilm-v5-s135, 1,3,5). BENCH_TEACHER=0 skips the teacher's bench
# when it is already benchmarked on this machine (each bench run is its own comparison).
# STUDENT_TRAIN_ARGS: the student's training options (default: --distill-weight 0.5, the s135
# recipe); ONNX_ARTIFACTS: what is exported and benchmarked besides torch-fp32 (default
# onnx-fp32,onnx-int8; add onnx-int8-vnni on an AVX-512 VNNI or arm64 CPU). The s135d student:
#   STUDENT_TRAIN_ARGS="--distill-weight 0.8 --epochs 4 --composed-shares 1 --segment-shares 0.5" \
#   ONNX_ARTIFACTS=onnx-fp32,onnx-int8,onnx-int8-vnni BENCH_TEACHER=0 \
#   bash lab/speed_candidates.sh b77-minilm-v5 b77-minilm-v5-s135d 1,3,5
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${CLI:-.venv/bin/intakegate}
TEACHER=bundles/banking77/${1:-b77-minilm-v5}
STUDENT_VERSION=${2:-b77-minilm-v5-s135}
STUDENT=bundles/banking77/$STUDENT_VERSION
STUDENT_LAYERS=${3:-1,3,5}
STUDENT_TRAIN_ARGS=${STUDENT_TRAIN_ARGS:---distill-weight 0.5}
ONNX_ARTIFACTS=${ONNX_ARTIFACTS:-onnx-fp32,onnx-int8}
held_ok() { "$@" || [ $? -eq 1 ]; }  # exit 1 is "held", which is expected here

[ -d "$TEACHER/model/onnx-int8" ] || \
  held_ok "$CLI" export "$TEACHER" --artifacts "$ONNX_ARTIFACTS" --measurement-only
[ -d "$STUDENT" ] || \
  held_ok "$CLI" train --dataset banking77 --bundle-version "$STUDENT_VERSION" \
    --teacher "$TEACHER" --student-layers "$STUDENT_LAYERS" $STUDENT_TRAIN_ARGS
[ -d "$STUDENT/model/onnx-int8" ] || \
  held_ok "$CLI" export "$STUDENT" --artifacts "$ONNX_ARTIFACTS" --measurement-only
[ "${BENCH_TEACHER:-1}" = 0 ] || \
  "$CLI" bench "$TEACHER" --device cpu --artifacts "torch-fp32,$ONNX_ARTIFACTS"
"$CLI" bench "$STUDENT" --device cpu --artifacts "torch-fp32,$ONNX_ARTIFACTS"
