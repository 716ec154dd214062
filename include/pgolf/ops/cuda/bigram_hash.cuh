// BigramHash on the GPU (nn/bigram_hash.hpp): the bucket of every position, the scaled add into the
// stream, and the elementwise part of the backward (beta dx, and each row's <dx, p> for dbeta, summed
// afterwards in a fixed order by ColumnGrad).
#pragma once

#include <cstddef>
#include <cstdint>

#include "pgolf/nn/bigram_hash.hpp"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

__global__ inline void bigram_hash_kernel(const std::int32_t* __restrict__ ids, std::size_t n, int seq, int buckets,
                                          std::int32_t* __restrict__ h) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) h[i] = pgolf::bigram_bucket_at(ids, i, int(i % std::size_t(seq)), buckets);
}

template <int Dim>
__global__ void bigram_add_kernel(const float* __restrict__ x, const float* __restrict__ p,
                                  const float* __restrict__ beta, std::size_t n, float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] + beta[0] * p[i];
}

// One warp per row: d[r, :] = beta dx[r, :] (in TOut), row[r] = <dx[r, :], p[r, :]> (fixed lane order).
template <int Dim, class TOut>
__global__ void bigram_backward_rows_kernel(const float* __restrict__ dx, const float* __restrict__ p,
                                            const float* __restrict__ beta, std::size_t rows, TOut* __restrict__ d,
                                            float* __restrict__ row) {
  const std::size_t r = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = int(threadIdx.x % 32);
  if (r >= rows) return;
  const float b = beta[0];
  float s = 0.f;
  for (int c = lane; c < Dim; c += 32) {
    const float g = dx[r * Dim + c];
    s += g * p[r * Dim + c];
    d[r * Dim + c] = from_float<TOut>(b * g);
  }
  s = warp_sum(s);
  if (lane == 0) row[r] = s;
}

}  // namespace detail

// h[n] = the bucket at flat position n (row position n % seq).
inline void bigram_hash(const std::int32_t* ids, std::size_t n, int seq, int buckets, std::int32_t* h,
                        cudaStream_t st = nullptr) {
  if (n == 0) return;
  detail::bigram_hash_kernel<<<blocks_for(n, 256), 256, 0, st>>>(ids, n, seq, buckets, h);
  PGOLF_CUDA_CHECK_LAUNCH("bigram_hash");
}

// out = x + beta[0] * p.
template <int Dim>
void bigram_add(const float* x, const float* p, const float* beta, std::size_t rows, float* out,
                cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  if (n == 0) return;
  detail::bigram_add_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(x, p, beta, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("bigram_add");
}

// d = beta[0] * dx (fp32 or bf16), row[r] = <dx[r], p[r]>.
template <int Dim, class TOut>
void bigram_backward_rows(const float* dx, const float* p, const float* beta, std::size_t rows, TOut* d, float* row,
                          cudaStream_t st = nullptr) {
  if (rows == 0) return;
  detail::bigram_backward_rows_kernel<Dim, TOut>
      <<<row_blocks(rows), kWarpsPerBlock * 32, 0, st>>>(dx, p, beta, rows, d, row);
  PGOLF_CUDA_CHECK_LAUNCH("bigram_backward_rows");
}

}  // namespace pgolf::ops::cuda
