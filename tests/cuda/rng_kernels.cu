#include "rng_kernels.hpp"

#include <vector>

#include "pgolf/core/cuda_check.hpp"
#include "pgolf/core/rng.hpp"

namespace {
__global__ void draw_kernel(std::uint64_t seed, std::uint32_t stream, std::size_t n, double* u, double* z) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    u[i] = pgolf::uniform01(seed, stream, i);
    z[i] = pgolf::normal01(seed, stream, i);
  }
}
}  // namespace

void draw_on_device(std::uint64_t seed, std::uint32_t stream, std::size_t n, double* uniform, double* normal) {
  double *du = nullptr, *dz = nullptr;
  PGOLF_CUDA_CHECK(cudaMalloc(&du, n * sizeof(double)));
  PGOLF_CUDA_CHECK(cudaMalloc(&dz, n * sizeof(double)));
  // Poison the outputs so an element the kernel fails to write cannot match by accident.
  PGOLF_CUDA_CHECK(cudaMemset(du, 0xff, n * sizeof(double)));
  PGOLF_CUDA_CHECK(cudaMemset(dz, 0xff, n * sizeof(double)));
  draw_kernel<<<unsigned((n + 255) / 256), 256>>>(seed, stream, n, du, dz);
  PGOLF_CUDA_CHECK_LAUNCH("draw_kernel");
  PGOLF_CUDA_CHECK(cudaMemcpy(uniform, du, n * sizeof(double), cudaMemcpyDeviceToHost));
  PGOLF_CUDA_CHECK(cudaMemcpy(normal, dz, n * sizeof(double), cudaMemcpyDeviceToHost));
  PGOLF_CUDA_CHECK(cudaFree(du));
  PGOLF_CUDA_CHECK(cudaFree(dz));
}
