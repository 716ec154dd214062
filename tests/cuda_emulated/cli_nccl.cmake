# cmake -DEMU=<pgolf-tiny-emulated> "-DMPIEXEC=<mpiexec and its flags, |-separated>" -DDIR=<scratch>
#       -P cli_nccl.cmake
# Data parallelism on the command line's CUDA path, under the CUDA and NCCL emulations: the same
# global batch trained by one process and by two ranks under mpiexec (NcclCommunicator, its id
# over MPI, gradients summed on the device). The gradient sums group the micro-batches differently
# (six on one rank; three per rank, then the two ranks), so the scores agree to float rounding,
# not bit for bit. And the two ranks' Muon split by matrix (the default) against Muon whole on each
# rank (--no-muon-shard): under the emulation the same weights bit for bit, so the same artifact.
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

run("two ranks, Muon whole" whole ${CMAKE_COMMAND} -E env PGOLF_EMU_DEVICES=2 ${mpiexec} -np 2 ${EMU} ${quick}
    --no-muon-shard --out-dir ${DIR}/np2_whole)
if(two MATCHES "muon_allreduce_ms_per_step min:0\\.00 max:0\\.00" OR
   NOT whole MATCHES "muon_allreduce_ms_per_step min:0\\.00 max:0\\.00")
  message(FATAL_ERROR "split Muon's all-reduce should show in the default run only:\n${two}\n${whole}")
endif()
file(SHA256 ${DIR}/np2/model.pgolf split_hash)
file(SHA256 ${DIR}/np2_whole/model.pgolf whole_hash)
if(NOT split_hash STREQUAL whole_hash)
  message(FATAL_ERROR "Muon split over two ranks wrote another artifact than Muon whole on each rank")
endif()
message(STATUS "Muon split and whole on two ranks: the same artifact (${split_hash})")
