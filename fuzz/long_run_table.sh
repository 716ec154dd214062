#!/usr/bin/env bash
# Prints the Markdown table of a run_long.sh output directory: executions, wall time, executions per
# second, edge coverage (cov), features (ft), corpus size and findings (crash/leak/timeout/oom files).
# Usage: fuzz/long_run_table.sh <out dir> [target ...]
set -u
out=$1
shift
targets=${*:-"shard artifact checkpoint jsonl tokenizer"}
echo "| target | executions | wall (s) | exec/s | cov | ft | corpus | exit | findings |"
echo "|---|---:|---:|---:|---:|---:|---|---:|---|"
for t in $targets; do
  log=$out/$t.log
  [ -f "$log" ] || continue
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  line=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$line" | awk '{print $2}')
  ft=$(grep -o 'ft: [0-9]*' <<<"$line" | awk '{print $2}')
  corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' <<<"$line" | awk '{print $2}')
  rc=$(grep "^$t rc=" "$out/summary.txt" | tail -1 | sed 's/.*rc=\([0-9]*\).*/\1/')
  wall=$(grep "^$t rc=" "$out/summary.txt" | tail -1 | sed 's/.*wall_s=\([0-9]*\).*/\1/')
  found=$(ls "$out/$t" 2>/dev/null | grep -cE '^(crash|leak|timeout|oom|slow-unit)-')
  eps=$(( ${runs:-0} / (${wall:-1} > 0 ? ${wall:-1} : 1) ))
  echo "| $t | ${runs:-?} | ${wall:-?} | $eps | ${cov:-?} | ${ft:-?} | ${corp:-?} | ${rc:-?} | $found |"
done
