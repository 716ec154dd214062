# cmake -DEMU=<pgolf-tiny-emulated> "-DMPIEXEC=<mpiexec and its flags, |-separated>" -DDIR=<scratch>
#       -P cli_nccl.cmake
# Data parallelism on the command line's CUDA path, under the CUDA and NCCL emulations: the same
# global batch trained by one process and by two ranks under mpiexec (NcclCommunicator, its id
# over MPI, gradients summed on the device). The gradient sums group the micro-batches differently
# (six on one rank; three per rank, then the two ranks), so the scores agree to float rounding,
# not bit for bit.
include(${CMAKE_CURRENT_LIST_DIR}/scores.cmake)
string(REPLACE "|" ";" mpiexec "${MPIEXEC}")
set(quick train --device cuda --iterations 2 --val-tokens 4097 --train-batch-tokens 3072 --micro-batch-tokens 512
          --val-loss-every 0 --no-progress)
file(REMOVE_RECURSE "${DIR}")
run("one process" one ${EMU} ${quick} --out-dir ${DIR}/np1)
run("two ranks" two ${CMAKE_COMMAND} -E env PGOLF_EMU_DEVICES=2 ${mpiexec} -np 2 ${EMU} ${quick} --out-dir ${DIR}/np2)
if(NOT two MATCHES "world_size:2 communicator:nccl.*comm: ranks:2 steps:2 grad_allreduce_ms_per_step")
  message(FATAL_ERROR "the two-rank run did not train over NCCL:\n${two}")
endif()
foreach(label "step:2/2" final_int8_zlib_roundtrip_exact)
  score("${one}" ${label} a)
  score("${two}" ${label} b)
  expect_close("${label} (1 process, 2 ranks)" ${a} ${b} 1000000)
endforeach()
