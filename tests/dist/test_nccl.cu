// NcclCommunicator on the GPUs this job is given: all-reduce of device floats (what the Trainer's
// gradients take: TrainerBackend<Cuda>::all_reduce_grads) and of host doubles, broadcast, barrier.
//
//   test_nccl                                 a world of one, its id over the TCP rendezvous on
//                                             127.0.0.1 (the torchrun-style path)
//   mpirun -np N test_nccl                    N ranks, one GPU each, the id over MPI
//   RANK=r WORLD_SIZE=N LOCAL_RANK=r MASTER_ADDR=.. MASTER_PORT=.. test_nccl   torchrun-style
//
// Without a CUDA device it prints why and exits 77 (CTest: skipped). Built where nvcc and NCCL are.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "pgolf/core/cuda_check.hpp"
#include "pgolf/dist/nccl.cuh"
#include "pgolf/train/backend_policy.hpp"

using namespace pgolf;

namespace {
// What TrainerBackend<Cuda>::all_reduce_grads needs from a model.
struct DeviceGrads {
  float* d = nullptr;
  std::size_t n = 0;
  cuda::DeviceParamSpan grads() const { return {d, n}; }
};
}  // namespace

int main() {
  if (cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  dist::LaunchEnv env = dist::launch_env();
  if (env.size == 1 && std::getenv("MASTER_ADDR") == nullptr) {
    ::setenv("MASTER_ADDR", "127.0.0.1", 1);
    ::setenv("PGOLF_RENDEZVOUS_PORT", "29533", 0);
  }
  dist::ScopedWorld world;
  try {
    world.install(std::make_unique<dist::NcclCommunicator>(env));
    auto& comm = dist::world();
    const int W = comm.size(), r = comm.rank();
    int failed = 0;

    // Device floats through the Trainer's path: element i on rank r is r + 1 + i; the sum over
    // ranks is W(W+1)/2 + W i, exact in float for these sizes.
    const std::size_t n = 1 << 20;
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = float(r + 1) + float(i % 1000);
    DeviceGrads g{nullptr, n};
    PGOLF_CUDA_CHECK(cudaMalloc(&g.d, n * sizeof(float)));
    PGOLF_CUDA_CHECK(cudaMemcpy(g.d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    TrainerBackend<Cuda>::all_reduce_grads(g, comm);
    PGOLF_CUDA_CHECK(cudaMemcpy(h.data(), g.d, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (std::size_t i = 0; i < n; ++i)
      if (h[i] != float(W * (W + 1) / 2) + float(W) * float(i % 1000)) {
        std::printf("FAIL rank %d: device all-reduce element %zu is %g\n", r, i, double(h[i]));
        ++failed;
        break;
      }
    PGOLF_CUDA_CHECK(cudaFree(g.d));

    double v[2] = {double(r), 1.0};  // host doubles: sum of ranks, count of ranks
    comm.all_reduce_sum(std::span<double>(v));
    if (v[0] != W * (W - 1) / 2.0 || v[1] != W) {
      std::printf("FAIL rank %d: host all-reduce gave %g %g\n", r, v[0], v[1]);
      ++failed;
    }
    const double b = comm.broadcast_value(r == 0 ? 42.5 : -1.0);
    if (b != 42.5) {
      std::printf("FAIL rank %d: broadcast gave %g\n", r, b);
      ++failed;
    }
    comm.barrier();
    failed = int(comm.sum(double(failed)));
    if (r == 0) std::printf("%s: NCCL communicator on %d rank(s)\n", failed ? "FAILED" : "PASSED", W);
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    if (world.distributed()) dist::world().fail(e.what());
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
