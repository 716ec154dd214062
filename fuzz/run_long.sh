#!/usr/bin/env bash
# The long fuzz runs: each target in turn (never in parallel), up to RUNS executions or SECONDS of
# wall time, whichever comes first, new inputs and any crash under OUT/<target>/, the log in
# OUT/<target>.log. Usage: fuzz/run_long.sh <build dir> <out dir> [target ...]
#   RUNS (10000000), SECONDS_CAP (0: no cap), NICE (10) tune it.
set -u
build=$1 out=$2
shift 2
targets=${*:-"jsonl checkpoint artifact shard safetensors tokenizer"}
src=$(cd "$(dirname "$0")" && pwd)
declare -A max_len=([shard]=2048 [artifact]=1024 [checkpoint]=1024 [jsonl]=2048 [tokenizer]=8192 [safetensors]=4096)
for t in $targets; do
  mkdir -p "$out/$t/corpus"
  cap=()
  [ "${SECONDS_CAP:-0}" -gt 0 ] && cap=(-max_total_time="$SECONDS_CAP")
  start=$(date +%s)
  nice -n "${NICE:-10}" "$build/fuzz/fuzz_$t" -runs="${RUNS:-10000000}" "${cap[@]}" -max_len="${max_len[$t]}" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/$t/" \
    "$out/$t/corpus" "$src/corpus/$t" >"$out/$t.log" 2>&1
  rc=$?
  echo "$t rc=$rc wall_s=$(( $(date +%s) - start ))" | tee -a "$out/summary.txt"
done
