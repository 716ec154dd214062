#!/usr/bin/env bash
# torchrun_like.sh N PORT command [args...]
# Starts N copies of the command with the environment torchrun gives its workers (RANK, WORLD_SIZE,
# LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT=PORT) and, as torchrun does, ends
# the others when one fails: the exit status is the first failure's, else 0.
set -u
n=$1 port=$2
shift 2
pids=()
for ((r = 0; r < n; ++r)); do
  RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" &
  pids+=($!)
done
status=0
for ((k = 0; k < n; ++k)); do
  wait -n
  s=$?
  if ((s != 0 && status == 0)); then
    status=$s
    kill "${pids[@]}" 2>/dev/null
  fi
done
exit $status
