// A binary built without MPI, launched by mpiexec -np N: dist::from_environment must refuse with a
// message on every rank rather than let N independent copies train (CTest: mpi.no_mpi_binary_np2).
// Built without PGOLF_HAVE_MPI whatever the configuration found.
#include <cstdio>
#include <exception>

#include "pgolf/dist/launch.hpp"

int main() {
  try {
    const auto comm = pgolf::dist::from_environment(false);
    std::printf("running as one of %d processes\n", comm->size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
