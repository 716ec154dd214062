#!/usr/bin/env bash
# The export quantisers x compressors on pgolf-tiny: trains one checkpoint (or takes one), then
# exports it with each quantiser and codec and prints a markdown table of the artifact bytes and the
# round-trip val_bpb (the pre-quantisation val_bpb is the checkpoint's). The tiny model's block
# matrices are below the reference's 65,536-element threshold, so every row but the first passes
# --quant-min-numel 4096 (the embedding stays int8 in every row, as in the records' int6 exports).
#   bench/quant_table.sh BUILD_DIR WORK_DIR [extra train flags...]
set -euo pipefail
build=${1:?build dir}; work=${2:?work dir}; shift 2
tiny=$build/examples/pgolf-tiny
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
val=${VAL_TOKENS:-131072}
mkdir -p "$work"
if [ ! -f "$work/train/checkpoint.bin" ]; then
  "$tiny" train --no-progress --out-dir "$work/train" --overwrite --val-tokens "$val" "$@" > "$work/train.txt"
fi
pre=$("$tiny" eval "$work/train/checkpoint.bin" --val-tokens "$val" | sed -n 's/.*val_bpb:\([0-9.]*\).*/\1/p' | tail -1)
echo "pre-quantisation val_bpb (checkpoint, $val val tokens): $pre"
echo
# Compression is lossless, so the round-trip val_bpb depends on the quantiser only: each row is scored
# once (with zlib, on VAL_TOKENS) and the other codecs' exports only measure bytes (scored on 512 tokens).
echo "| export | round-trip val_bpb | zlib | zstd | brotli | brotli-shuffle | lzma |"
echo "|---|---:|---:|---:|---:|---:|---:|"
rows=(
  "int8 (reference: only tok_emb quantised)|"
  "int8 row-max, all matrices|--quant rowmax --quant-bits 8 --quant-min-numel 4096"
  "int6 row-max|--quant int6 --quant-min-numel 4096"
  "int6 gptq-lite|--quant gptq-lite --quant-min-numel 4096"
  "int6 gptq (SDClip k 13 / 11.5 / 12.85)|--quant gptq --quant-min-numel 4096 --gptq-calib-batches ${CALIB:-16}"
  "int6 gptq (percentile sweep)|--quant gptq --no-gptq-sdclip --quant-min-numel 4096 --gptq-calib-batches ${CALIB:-16}"
)
for row in "${rows[@]}"; do
  name=${row%%|*}; flags=${row#*|}
  line="| $name |"
  cells=""
  for codec in zlib zstd brotli brotli-shuffle lzma; do
    tokens=512
    [ $codec = zlib ] && tokens=$val
    # shellcheck disable=SC2086
    out=$("$tiny" export "$work/train/checkpoint.bin" -o "$work/a.pgolf" --overwrite --compressor $codec \
          --val-tokens "$tokens" ${EXPORT_FLAGS:-} $flags)
    bytes=$(echo "$out" | sed -n 's/^Serialized model [a-z0-9]*+[a-z-]*: \([0-9]*\) bytes.*/\1/p')
    if [ $codec = zlib ]; then
      bpb=$(echo "$out" | sed -n 's/.*_roundtrip_exact .*val_bpb:\([0-9.]*\).*/\1/p')
      line="$line $bpb |"
    fi
    cells="$cells $bytes |"
  done
  echo "$line$cells"
done
