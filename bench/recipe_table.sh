#!/usr/bin/env bash
# The records' training recipe on pgolf-tiny: one training run per row (same seed, data and steps),
# each exported the same way (EXPORT_FLAGS, default GPTQ int6 + LZMA) and scored by the standard and
# the sliding-window evaluation. Prints a markdown table: the weights scored, the pre-quantisation
# val_bpb (standard and sliding), the artifact bytes and the round-trip val_bpb (standard and
# sliding). Every figure is read from the run's metrics.jsonl.
#   bench/recipe_table.sh BUILD_DIR WORK_DIR [extra train flags for every row...]
# Environment: ITERATIONS (default 300, pgolf-tiny's preset), VAL_TOKENS (default 65536), STRIDE
# (default 64), EXPORT_FLAGS.
set -euo pipefail
build=${1:?build dir}; work=${2:?work dir}; shift 2
tiny=$build/examples/pgolf-tiny
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
iters=${ITERATIONS:-300}
val=${VAL_TOKENS:-65536}
stride=${STRIDE:-64}
export_flags=${EXPORT_FLAGS:---quant gptq --quant-min-numel 4096 --gptq-calib-batches 8 --compressor lzma}
mkdir -p "$work"
rows=(
  "plain (no averaging, no QAT)|"
  "EMA 0.99|--ema-decay 0.99"
  "SWA every 10 steps under LR x0.5|--swa-every 10 --swa-threshold 0.5"
  "SWA of the EMA|--ema-decay 0.99 --swa-every 10 --swa-threshold 0.5"
  "EMA + late QAT (int6 under LR x0.3)|--ema-decay 0.99 --qat-threshold 0.3"
  "EMA + late QAT + replay (16 x 2) + distillation (20 steps)|--ema-decay 0.99 --qat-threshold 0.3 --replay-batches 16 --distill-steps 20"
)
# Reads one field of the last metrics.jsonl record of an event.
field() { grep "\"event\":\"$2\"" "$1" | tail -1 | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p" | tr -d '"'; }
echo "| recipe | weights scored | pre-quant val_bpb | pre-quant sliding | artifact bytes | round-trip val_bpb | round-trip sliding | train time |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
i=0
for row in "${rows[@]}"; do
  name=${row%%|*}; flags=${row#*|}
  dir=$work/row$i; i=$((i + 1))
  # shellcheck disable=SC2086
  "$tiny" train --no-progress --out-dir "$dir" --overwrite --iterations "$iters" --val-loss-every 0 \
    --val-tokens "$val" --eval-stride "$stride" $export_flags $flags "$@" > "$dir.txt" 2>&1 ||
    { echo "| $name | failed: see $dir.txt |"; continue; }
  m=$dir/metrics.jsonl
  printf '| %s | %s | %.4f | %.4f | %s | %.4f | %.4f | %.0f s |\n' "$name" "$(field "$m" val weights)" \
    "$(field "$m" val val_bpb)" "$(field "$m" val_sliding val_bpb)" "$(field "$m" export model_bytes)" \
    "$(field "$m" export roundtrip_val_bpb)" "$(field "$m" export roundtrip_sliding_val_bpb)" \
    "$(echo "$(field "$m" val train_time_ms) / 1000" | bc -l)"
done
