// Weight averaging on device buffers (fp32, the device layout): the CUDA side of
// train/weight_average.hpp, element-wise in the same formulas.
#pragma once

#include <cstddef>

#include <cuda_runtime.h>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/core/cuda_check.hpp"
#include "pgolf/core/error.hpp"

namespace pgolf::cuda {

namespace detail {
__global__ inline void ema_kernel(float* __restrict__ ema, const float* __restrict__ w, std::size_t n, float d, float e) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    ema[i] = d * ema[i] + e * w[i];
}
__global__ inline void accumulate_kernel(float* __restrict__ sum, const float* __restrict__ src, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    sum[i] += src[i];
}
__global__ inline void average_kernel(float* __restrict__ out, const float* __restrict__ sum, std::size_t n, float count) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    out[i] = sum[i] / count;
}
inline unsigned blocks_for(std::size_t n) { return unsigned(std::min<std::size_t>((n + 255) / 256, 4096)); }
}  // namespace detail

inline void ema_update(float* ema, const float* w, std::size_t n, double decay) {
  if (n == 0) return;
  detail::ema_kernel<<<detail::blocks_for(n), 256>>>(ema, w, n, float(decay), float(1.0 - decay));
  PGOLF_CUDA_CHECK_LAUNCH("ema_update");
}
inline void accumulate(float* sum, const float* src, std::size_t n) {
  if (n == 0) return;
  detail::accumulate_kernel<<<detail::blocks_for(n), 256>>>(sum, src, n);
  PGOLF_CUDA_CHECK_LAUNCH("swa_accumulate");
}
inline void average_into(float* out, const float* sum, std::size_t n, long long count) {
  PGOLF_CHECK(count > 0, "average_into: count must be positive, got ", count);
  if (n == 0) return;
  detail::average_kernel<<<detail::blocks_for(n), 256>>>(out, sum, n, float(count));
  PGOLF_CUDA_CHECK_LAUNCH("swa_average");
}

}  // namespace pgolf::cuda
