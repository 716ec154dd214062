#!/usr/bin/env bash
# Compile time of one variant binary (examples/tiny.cpp, pgolf-tiny) at a commit: the translation
# unit compiled by g++ (a CPU-only build) and by nvcc (a CUDA build, the binary carrying both
# backends), each timed `repeats` times from a configured build (only that TU and its link).
#
#   bench/compile_time.sh <commit> [repeats]     prints one line per build: min and median seconds
#
# Run it for two commits back to back on an otherwise idle machine to compare them.
set -euo pipefail
commit=${1:?usage: bench/compile_time.sh <commit> [repeats]}
repeats=${2:-3}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d /tmp/pgolf-compile-time.XXXXXX)
trap 'git -C "$repo" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$repo" worktree add --detach "$work/src" "$commit" >/dev/null 2>&1
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}

time_build() {  # $1: build dir
  local times=()
  for _ in $(seq "$repeats"); do
    touch "$work/src/examples/tiny.cpp"
    local t0 t1
    t0=$(date +%s.%N)
    cmake --build "$1" --target pgolf-tiny -j1 >/dev/null
    t1=$(date +%s.%N)
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "min %.1f s  median %.1f s  (%d runs)\n", a[1], a[int((NR+1)/2)], NR}'
}

cmake -S "$work/src" -B "$work/cpu" -DCMAKE_BUILD_TYPE=Release -DPGOLF_CUDA=OFF >/dev/null
cmake --build "$work/cpu" --target pgolf-tiny -j1 >/dev/null  # warm: the first build also makes the tools
echo "$(git -C "$repo" rev-parse --short "$commit") g++ (CPU only):   $(time_build "$work/cpu")"
if [ -x "$nvcc" ]; then
  CUDACXX="$nvcc" cmake -S "$work/src" -B "$work/cuda" -DCMAKE_BUILD_TYPE=Release -DPGOLF_CUDA=ON >/dev/null
  cmake --build "$work/cuda" --target pgolf-tiny -j1 >/dev/null
  echo "$(git -C "$repo" rev-parse --short "$commit") nvcc (CPU + CUDA): $(time_build "$work/cuda")"
fi
