// Small device helpers shared by the CUDA kernels: bf16 conversion, warp reductions, launch sizes.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>

#include "pgolf/core/cuda_check.hpp"

namespace pgolf::ops::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum of one value per thread over the block, in a fixed tree order (so the same bits every run).
// blockDim.x must be a power of two no larger than kMaxBlock; every thread gets the result.
inline constexpr int kMaxBlock = 1024;
template <class T>
__device__ T block_sum(T v) {
  __shared__ T part[kMaxBlock];
  part[threadIdx.x] = v;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (int(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  const T total = part[0];
  __syncthreads();  // the buffer may be reused by the caller's next block_sum
  return total;
}

inline unsigned blocks_for(std::size_t work, unsigned per_block) {
  return unsigned((work + per_block - 1) / per_block);
}

// One warp per row, kWarpsPerBlock rows per block.
inline constexpr int kWarpsPerBlock = 8;
inline unsigned row_blocks(std::size_t rows) { return blocks_for(rows, kWarpsPerBlock); }

namespace detail {
__global__ inline void cast_to_bf16_kernel(const float* __restrict__ x, std::size_t n, bf16* __restrict__ y) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}
template <class T>
__global__ void scale_into_kernel(const T* __restrict__ x, float k, std::size_t n, T* __restrict__ y) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = from_float<T>(k * to_float(x[i]));
}
}  // namespace detail

// y = k * x (fp32 or bf16).
template <class T>
void scale_into(const T* x, float k, std::size_t n, T* y, cudaStream_t st = nullptr) {
  if (n == 0) return;
  detail::scale_into_kernel<T><<<blocks_for(n, 256), 256, 0, st>>>(x, k, n, y);
  PGOLF_CUDA_CHECK_LAUNCH("scale_into");
}

// The bf16 copies of the fp32 master weights that the matrix products read.
inline void cast_to_bf16(const float* x, std::size_t n, bf16* y, cudaStream_t st = nullptr) {
  if (n == 0) return;  // a model without tensors (a component tested alone)
  detail::cast_to_bf16_kernel<<<blocks_for(n, 256), 256, 0, st>>>(x, n, y);
  PGOLF_CUDA_CHECK_LAUNCH("cast_to_bf16");
}

}  // namespace pgolf::ops::cuda
