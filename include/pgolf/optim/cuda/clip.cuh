// Global-norm gradient clipping on the GPU, as optim/clip.hpp: the norm of all gradients in a
// fixed-order two-pass reduction (partial sums per block, then one block in double), then one
// scaling pass when it exceeds max_norm. Returns the norm before clipping (NaN/inf show through).
#pragma once

#include <cmath>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/param_layout.hpp"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::cuda {

namespace detail {
inline constexpr int kNormBlocks = 264;

__global__ inline void sumsq_partials_kernel(const float* __restrict__ g, std::size_t n, double* __restrict__ part) {
  double s = 0;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    s += double(g[i]) * double(g[i]);
  s = ops::cuda::block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ inline void scale_kernel(float* __restrict__ g, std::size_t n, float s) {
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    g[i] *= s;
}
}  // namespace detail

inline double clip_grad_norm(DeviceParamSpan grads, double max_norm) {
  DeviceBuffer<double> part(detail::kNormBlocks);
  detail::sumsq_partials_kernel<<<detail::kNormBlocks, 256>>>(grads.data, grads.size, part.data());
  PGOLF_CUDA_CHECK_LAUNCH("grad_norm");
  double host[detail::kNormBlocks];
  PGOLF_CUDA_CHECK(cudaMemcpy(host, part.data(), sizeof(host), cudaMemcpyDeviceToHost));
  double ss = 0;
  for (double v : host) ss += v;
  const double norm = std::sqrt(ss);
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && std::isfinite(norm) && coef < 1.0) {
    detail::scale_kernel<<<detail::kNormBlocks, 256>>>(grads.data, grads.size, float(coef));
    PGOLF_CUDA_CHECK_LAUNCH("grad_clip_scale");
  }
  return norm;
}

}  // namespace pgolf::cuda
