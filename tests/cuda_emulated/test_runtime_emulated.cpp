// The runtime emulation's own device rules (emulate_runtime.hpp), as the device would enforce them:
// a kernel handed a pointer that is not device memory (pageable host memory, a freed allocation)
// does not run and its launch reports an illegal address, where the device would fault in the
// kernel and lose the context; null and one-past-the-end pointers (an empty range) are accepted.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "emulate_runtime.hpp"

namespace {
__global__ void add_one(float* x, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) x[i] += 1.f;
}
}  // namespace

TEST_CASE("emulated runtime: a kernel handed memory the device cannot reach does not run", "[runtime_emulated]") {
  constexpr int n = 4;
  float* d = nullptr;
  REQUIRE(cudaMalloc(&d, n * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMemset(d, 0, n * sizeof(float)) == cudaSuccess);
  emu::launch_kernel(emu::Cfg(1, 32), add_one, d, n);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  std::vector<float> back(n, -1.f);
  REQUIRE(cudaMemcpy(back.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(back == std::vector<float>(n, 1.f));

  // An empty range: one past the end, or null.
  emu::launch_kernel(emu::Cfg(1, 32), add_one, d + n, 0);
  CHECK(cudaGetLastError() == cudaSuccess);
  emu::launch_kernel(emu::Cfg(1, 32), add_one, static_cast<float*>(nullptr), 0);
  CHECK(cudaGetLastError() == cudaSuccess);

  // Host memory: refused, nothing written.
  std::vector<float> host(n, 0.f);
  emu::launch_kernel(emu::Cfg(1, 32), add_one, host.data(), n);
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
  CHECK(host == std::vector<float>(n, 0.f));
  CHECK(std::string(cudaGetErrorString(cudaErrorIllegalAddress)) == "an illegal memory access was encountered");

  // Past one-past-the-end of the allocation, and after it is freed.
  emu::launch_kernel(emu::Cfg(1, 32), add_one, d + n + 64, 0);
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
  REQUIRE(cudaFree(d) == cudaSuccess);
  emu::launch_kernel(emu::Cfg(1, 32), add_one, d, n);
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
}
