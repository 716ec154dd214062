// dist::from_environment(cuda): the communicator a process should use, from how it was launched.
//
//   no launcher, or a world of 1          SingleProcess
//   CPU backend, mpirun / PMI, world > 1  MpiCommunicator (needs a binary built with MPI)
//   CUDA backend, world > 1               NcclCommunicator (the id over MPI under mpirun, else over
//                                         the MASTER_ADDR/MASTER_PORT rendezvous; needs NCCL)
//
// A binary that lacks what its launch needs stops with a message saying so, on every rank, rather
// than quietly training N independent copies of one model.
#pragma once

#include <memory>

#include "pgolf/core/error.hpp"
#include "pgolf/dist/communicator.hpp"
#ifdef PGOLF_HAVE_MPI
#include "pgolf/dist/mpi.hpp"
#endif
#if defined(__CUDACC__) && defined(PGOLF_HAVE_NCCL)
#include "pgolf/dist/nccl.cuh"
#endif

namespace pgolf::dist {

inline std::unique_ptr<Communicator> from_environment(bool cuda) {
  const LaunchEnv e = launch_env();
  if (e.size == 1) return std::make_unique<SingleProcess>();
  if (cuda) {
#if defined(__CUDACC__) && defined(PGOLF_HAVE_NCCL)
    return std::make_unique<NcclCommunicator>(e);
#else
    PGOLF_FAIL("rank ", e.rank, " of ", e.size, " (", e.size_variable, "=", e.size, " set by ", e.launcher,
               ") on the CUDA backend, but this binary was built without NCCL: it would train ", e.size,
               " independent copies. Build it where nvcc and NCCL are found, or run one process");
#endif
  }
#ifdef PGOLF_HAVE_MPI
  PGOLF_CHECK(e.mpi(), "rank ", e.rank, " of ", e.size, " (", e.size_variable, " set by ", e.launcher,
              ") on the CPU backend: CPU data parallelism runs over MPI; launch with mpirun -np ", e.size);
  auto c = std::make_unique<MpiCommunicator>();
  PGOLF_CHECK(c->size() == e.size, "MPI reports ", c->size(), " ranks but ", e.size_variable, "=", e.size);
  return c;
#else
  PGOLF_FAIL("rank ", e.rank, " of ", e.size, " (", e.size_variable, "=", e.size, " set by ", e.launcher,
             "), but this binary was built without MPI: it would train ", e.size,
             " independent copies. Install MPI (e.g. apt-get install libopenmpi-dev openmpi-bin), reconfigure "
             "(CMake finds it and defines PGOLF_HAVE_MPI) and rebuild, or run one process");
#endif
}

}  // namespace pgolf::dist
