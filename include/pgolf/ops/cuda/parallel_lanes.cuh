// The parallel two-lane residual's elementwise kernels (nn/parallel_lanes.hpp): the attention branch
// scaled into fp32, the lane update and its backward, the lanes' mean, and the six lambdas' gradients
// from per-channel sums (ColumnGrad) added in a fixed order, so every run has the same bits.
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

template <int Dim, class TH>
__global__ void scale_channels_kernel(const TH* __restrict__ h, const float* __restrict__ s, std::size_t n,
                                      float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = s[i % Dim] * to_float(h[i]);
}

// P [src, dst]: 0 attention -> lane 0, 1 attention -> lane 1, 2 MLP -> lane 0, 3 MLP -> lane 1.
template <int Dim, class TH>
__global__ void lane_merge_forward_kernel(const float* __restrict__ x, const float* __restrict__ x1,
                                          const float* __restrict__ a, const TH* __restrict__ h,
                                          const float* __restrict__ ms, const float* __restrict__ P,
                                          const float* __restrict__ r, std::size_t n, float* __restrict__ out0,
                                          float* __restrict__ out1) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float m = ms[i % Dim] * to_float(h[i]);
  out0[i] = r[0] * x[i] + P[0] * a[i] + P[2] * m;
  out1[i] = r[1] * x1[i] + P[1] * a[i] + P[3] * m;
}

__global__ inline void lane_merge_backward_kernel(const float* __restrict__ g0, const float* __restrict__ g1,
                                                  const float* __restrict__ P, const float* __restrict__ r,
                                                  std::size_t n, float* __restrict__ dx, float* __restrict__ dx1,
                                                  float* __restrict__ da, float* __restrict__ dm) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  dx[i] = r[0] * g0[i];
  dx1[i] = r[1] * g1[i];
  da[i] = P[0] * g0[i] + P[1] * g1[i];
  dm[i] = P[2] * g0[i] + P[3] * g1[i];
}

// One thread per lambda, each summing its Dim channel sums in order.
template <int Dim>
__global__ void lane_lambda_grads_kernel(const float* __restrict__ col, const float* __restrict__ ms,
                                         float* __restrict__ dr, float* __restrict__ dP) {
  const int k = threadIdx.x;
  if (k >= 6) return;
  float s = 0.f;
  for (int c = 0; c < Dim; ++c) s += (k >= 4 ? ms[c] : 1.f) * col[k * Dim + c];
  if (k < 2) dr[k] += s;
  else dP[k - 2] += s;
}

__global__ inline void lane_mean_forward_kernel(const float* __restrict__ x, const float* __restrict__ x1, std::size_t n,
                                                float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 0.5f * (x[i] + x1[i]);
}

__global__ inline void lane_mean_backward_kernel(const float* __restrict__ g, std::size_t n, float* __restrict__ dx,
                                                 float* __restrict__ dx1) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dx[i] = dx1[i] = 0.5f * g[i];
}

}  // namespace detail

// out = s (per channel) * h, in fp32.
template <int Dim, class TH>
void scale_channels(const TH* h, const float* s, std::size_t rows, float* out, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::scale_channels_kernel<Dim, TH><<<blocks_for(n, 256), 256, 0, st>>>(h, s, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("scale_channels");
}

template <int Dim, class TH>
void lane_merge_forward(const float* x, const float* x1, const float* a, const TH* h, const float* ms, const float* P,
                        const float* r, std::size_t rows, float* out0, float* out1, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::lane_merge_forward_kernel<Dim, TH><<<blocks_for(n, 256), 256, 0, st>>>(x, x1, a, h, ms, P, r, n, out0, out1);
  PGOLF_CUDA_CHECK_LAUNCH("lane_merge_forward");
}

// dx = r0 g0, dx1 = r1 g1, da = P00 g0 + P01 g1, dm = P10 g0 + P11 g1 (d of the scaled MLP branch).
template <int Dim>
void lane_merge_backward(const float* g0, const float* g1, const float* P, const float* r, std::size_t rows, float* dx,
                         float* dx1, float* da, float* dm, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::lane_merge_backward_kernel<<<blocks_for(n, 256), 256, 0, st>>>(g0, g1, P, r, n, dx, dx1, da, dm);
  PGOLF_CUDA_CHECK_LAUNCH("lane_merge_backward");
}

// col [6, Dim]: per-channel sums of g0 x, g1 x1, g0 a, g1 a, g0 h, g1 h. dr[0..1], dP[0..3] += their totals
// (the last two weighted by mlp_scale).
template <int Dim>
void lane_lambda_grads(const float* col, const float* ms, float* dr, float* dP, cudaStream_t st = nullptr) {
  detail::lane_lambda_grads_kernel<Dim><<<1, 32, 0, st>>>(col, ms, dr, dP);
  PGOLF_CUDA_CHECK_LAUNCH("lane_lambda_grads");
}

inline void lane_mean_forward(const float* x, const float* x1, std::size_t n, float* out, cudaStream_t st = nullptr) {
  detail::lane_mean_forward_kernel<<<blocks_for(n, 256), 256, 0, st>>>(x, x1, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("lane_mean_forward");
}

inline void lane_mean_backward(const float* g, std::size_t n, float* dx, float* dx1, cudaStream_t st = nullptr) {
  detail::lane_mean_backward_kernel<<<blocks_for(n, 256), 256, 0, st>>>(g, n, dx, dx1);
  PGOLF_CUDA_CHECK_LAUNCH("lane_mean_backward");
}

}  // namespace pgolf::ops::cuda
