// Catch2 main for GPU tests: skips (exit code 77) with a message when no CUDA device is present.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "pgolf/core/cuda_check.hpp"

int main(int argc, char** argv) {
  if (pgolf::cuda::device_count() == 0) {
    std::printf("SKIP: no CUDA device found; the cuda tests need a GPU\n");
    return 77;
  }
  cudaDeviceProp prop{};
  PGOLF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("cuda tests on %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  return Catch::Session().run(argc, argv);
}
