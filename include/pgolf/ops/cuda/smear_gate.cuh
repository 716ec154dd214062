// SmearGate on the GPU (nn/smear_gate.hpp), both forms. bos < 0: no BOS fix. Parameter gradients are
// not summed here: the backward kernels write per-element (SmearGate) or per-token (SmearGateLinear)
// terms that ColumnGrad reduces in a fixed order.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

__device__ __forceinline__ float smear_sigmoid(float z) { return 1.f / (1.f + expf(-z)); }
__device__ __forceinline__ bool smear_blocked(const std::int32_t* ids, std::size_t n, int bos) {
  return bos >= 0 && ids[n] == bos;
}

template <int Dim>
__global__ void smear_forward_kernel(const float* __restrict__ x, const float* __restrict__ gate,
                                     const std::int32_t* __restrict__ ids, std::size_t rows, int seq, int bos,
                                     float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * Dim) return;
  const std::size_t n = i / Dim;
  const int j = int(i % Dim);
  const float g = smear_blocked(ids, n, bos) ? 0.f : smear_sigmoid(gate[j]);
  const float prev = n % std::size_t(seq) == 0 ? 0.f : x[i - Dim];
  out[i] = (1.f - g) * x[i] + g * prev;
}

// dx = (1 - g_t) dy_t + g_{t+1} dy_{t+1};  fac = g (1 - g) (x_{t-1} - x_t) (0 at blocked positions).
template <int Dim>
__global__ void smear_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                      const float* __restrict__ gate, const std::int32_t* __restrict__ ids,
                                      std::size_t rows, int seq, int bos, float* __restrict__ dx,
                                      float* __restrict__ fac) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * Dim) return;
  const std::size_t n = i / Dim;
  const int j = int(i % Dim);
  const float g = smear_sigmoid(gate[j]);
  const bool blocked = smear_blocked(ids, n, bos), last = (n + 1) % std::size_t(seq) == 0;
  const float gt = blocked ? 0.f : g;
  const float gn = last || smear_blocked(ids, n + 1, bos) ? 0.f : g;
  dx[i] = (1.f - gt) * dy[i] + (last ? 0.f : gn * dy[i + Dim]);
  const float prev = n % std::size_t(seq) == 0 ? 0.f : x[i - Dim];
  fac[i] = blocked ? 0.f : g * (1.f - g) * (prev - x[i]);
}

// One warp per row: s = sigmoid(w . e[:K]), g = lambda s (0 at a row's start or a blocked position),
// out = e + g e_prev.
template <int Dim, int K>
__global__ void smear_linear_forward_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                            const float* __restrict__ lambda, const std::int32_t* __restrict__ ids,
                                            std::size_t rows, int seq, int bos, float* __restrict__ out,
                                            float* __restrict__ s_out, float* __restrict__ g_out) {
  const std::size_t n = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = int(threadIdx.x % 32);
  if (n >= rows) return;
  const float* e = x + n * Dim;
  float z = 0.f;
  for (int j = lane; j < K; j += 32) z += w[j] * e[j];
  z = warp_sum(z);
  const float s = smear_sigmoid(z);
  const bool off = n % std::size_t(seq) == 0 || smear_blocked(ids, n, bos);
  const float g = off ? 0.f : lambda[0] * s;
  if (lane == 0) s_out[n] = s, g_out[n] = g;
  for (int j = lane; j < Dim; j += 32) out[n * Dim + j] = off ? e[j] : e[j] + g * e[j - Dim];
}

// One warp per row: q = dy_t . e_{t-1}, dz = lambda s (1 - s) q;
// dx = dy_t + g_{t+1} dy_{t+1} + [j < K] dz w_j;  tw[n, j] = dz e_t[j];  tl[n] = s q.
template <int Dim, int K>
__global__ void smear_linear_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                             const float* __restrict__ w, const float* __restrict__ lambda,
                                             const float* __restrict__ s_in, const float* __restrict__ g_in,
                                             const std::int32_t* __restrict__ ids, std::size_t rows, int seq, int bos,
                                             float* __restrict__ dx, float* __restrict__ tw, float* __restrict__ tl) {
  const std::size_t n = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = int(threadIdx.x % 32);
  if (n >= rows) return;
  const bool off = n % std::size_t(seq) == 0 || smear_blocked(ids, n, bos);
  const bool last = (n + 1) % std::size_t(seq) == 0;
  float q = 0.f;
  if (!off)
    for (int j = lane; j < Dim; j += 32) q += dy[n * Dim + j] * x[(n - 1) * Dim + j];
  q = warp_sum(q);
  const float s = s_in[n];
  const float dz = off ? 0.f : lambda[0] * s * (1.f - s) * q;
  const float gn = last ? 0.f : g_in[n + 1];
  for (int j = lane; j < Dim; j += 32) {
    float d = dy[n * Dim + j];
    if (!last) d += gn * dy[(n + 1) * Dim + j];
    if (j < K) {
      d += dz * w[j];
      tw[n * K + j] = dz * x[n * Dim + j];
    }
    dx[n * Dim + j] = d;
  }
  if (lane == 0) tl[n] = off ? 0.f : s * q;
}

}  // namespace detail

template <int Dim>
void smear_forward(const float* x, const float* gate, const std::int32_t* ids, std::size_t rows, int seq, int bos,
                   float* out, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  if (n == 0) return;
  detail::smear_forward_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(x, gate, ids, rows, seq, bos, out);
  PGOLF_CUDA_CHECK_LAUNCH("smear_forward");
}

template <int Dim>
void smear_backward(const float* dy, const float* x, const float* gate, const std::int32_t* ids, std::size_t rows,
                    int seq, int bos, float* dx, float* fac, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  if (n == 0) return;
  detail::smear_backward_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(dy, x, gate, ids, rows, seq, bos, dx, fac);
  PGOLF_CUDA_CHECK_LAUNCH("smear_backward");
}

template <int Dim, int K>
void smear_linear_forward(const float* x, const float* w, const float* lambda, const std::int32_t* ids,
                          std::size_t rows, int seq, int bos, float* out, float* s, float* g,
                          cudaStream_t st = nullptr) {
  static_assert(K <= Dim, "smear_linear: more gate channels than the width");
  if (rows == 0) return;
  detail::smear_linear_forward_kernel<Dim, K>
      <<<row_blocks(rows), kWarpsPerBlock * 32, 0, st>>>(x, w, lambda, ids, rows, seq, bos, out, s, g);
  PGOLF_CUDA_CHECK_LAUNCH("smear_linear_forward");
}

template <int Dim, int K>
void smear_linear_backward(const float* dy, const float* x, const float* w, const float* lambda, const float* s,
                           const float* g, const std::int32_t* ids, std::size_t rows, int seq, int bos, float* dx,
                           float* tw, float* tl, cudaStream_t st = nullptr) {
  if (rows == 0) return;
  detail::smear_linear_backward_kernel<Dim, K>
      <<<row_blocks(rows), kWarpsPerBlock * 32, 0, st>>>(dy, x, w, lambda, s, g, ids, rows, seq, bos, dx, tw, tl);
  PGOLF_CUDA_CHECK_LAUNCH("smear_linear_backward");
}

}  // namespace pgolf::ops::cuda
