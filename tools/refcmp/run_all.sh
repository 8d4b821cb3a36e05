#!/usr/bin/env bash
# Interleaved timings of mgml_tf against the official PintheMemory code (PyTorch), same CPU, same threads.
#   TF_PY=python-with-mgml_tf TORCH_PY=python-with-torch PINMEM_REF_DIR=checkout OUT=dir \
#   [ROUNDS=5] [THREADS=2] [SIZE=256] [BPD=2] [SECTIONS="train infer"] bash tools/refcmp/run_all.sh
# SIZE is the square crop of the training steps, BPD the images per domain (two domains); INFER the inference
# image (HxW). TRAIN_REF / TRAIN_TF / TRAIN_PAIRS choose the training configurations (tools/refcmp/worker_*.py).
# The driver runs as `python3 -m tools.refcmp.timing` in the repository root; the paths given are made absolute
# first, so relative ones mean what they meant where this script was started.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${TF_PY:?}" "${TORCH_PY:?}" "${PINMEM_REF_DIR:?}" "${OUT:?}"
ROUNDS="${ROUNDS:-5}"; THREADS="${THREADS:-2}"; SECTIONS="${SECTIONS:-train infer}"
SIZE="${SIZE:-256}"; BPD="${BPD:-2}"; INFER="${INFER:-512x1024}"
TRAIN_REF="${TRAIN_REF:-mgml,mgml_noanomaly,baseline,mldg}"; TRAIN_TF="${TRAIN_TF:-mgml1,mgml2,baseline,mldg1}"
TRAIN_PAIRS="${TRAIN_PAIRS:-mgml1/mgml,mgml2/mgml,mgml1/mgml_noanomaly,mgml2/mgml_noanomaly,baseline/baseline,mldg1/mldg}"
absolute() { case "$1" in */*) echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")" ;; *) echo "$1" ;; esac; }
TF_PY="$(absolute "$TF_PY")"; TORCH_PY="$(absolute "$TORCH_PY")"
PINMEM_REF_DIR="$(cd "$PINMEM_REF_DIR" && pwd)"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
export PINMEM_REF_DIR
cd "$REPO"
for s in $SECTIONS; do case $s in
train)
  D="$OUT/train_${SIZE}"; mkdir -p "$D"
  python3 -m tools.refcmp.timing --tf_python="$TF_PY" --torch_python="$TORCH_PY" --ref_dir="$PINMEM_REF_DIR" \
    --rounds="$ROUNDS" --threads="$THREADS" --size="$SIZE" --batch_per_domain="$BPD" --warmup=2 --gap=1 \
    --ref_configs="$TRAIN_REF" --tf_configs="$TRAIN_TF" --pairs="$TRAIN_PAIRS" \
    --log_dir="$D" --json="$D/timing.json" | tee "$D/timing.txt" ;;
infer)
  mkdir -p "$OUT/infer"
  python3 -m tools.refcmp.timing --tf_python="$TF_PY" --torch_python="$TORCH_PY" --ref_dir="$PINMEM_REF_DIR" \
    --rounds="$ROUNDS" --threads="$THREADS" --infer="$INFER" --warmup=2 --gap=1 \
    --ref_configs=infer_memory,infer_baseline --tf_configs=infer_memory,infer_baseline \
    --pairs=infer_memory/infer_memory,infer_baseline/infer_baseline \
    --log_dir="$OUT/infer" --json="$OUT/infer/timing.json" | tee "$OUT/infer/timing.txt" ;;
diag)
  mkdir -p "$OUT/diag"
  python3 -m tools.refcmp.timing --tf_python="$TF_PY" --torch_python="$TORCH_PY" --ref_dir="$PINMEM_REF_DIR" \
    --rounds="$ROUNDS" --threads="$THREADS" --size="$SIZE" --batch_per_domain="$BPD" --warmup=2 --gap=1 \
    --ref_configs=backbone,backbone_tv,aspp,decoder --tf_configs=backbone,backbone_keras,aspp,decoder \
    --pairs=backbone/backbone,backbone_keras/backbone_tv,aspp/aspp,decoder/decoder \
    --log_dir="$OUT/diag" --json="$OUT/diag/timing.json" | tee "$OUT/diag/timing.txt" ;;
esac; done
