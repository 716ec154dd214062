// Gated U-Net skips on the GPU (nn/unet_skip.hpp, GptSpec.depth.skip_gates), g = sigmoid(gamma) per
// channel:
//   gated_skip_forward:  out = g x + (1 - g) w s
//   gated_skip_backward: a = (1 - g) dout, b = g (1 - g) (x - w s) dout, dskip += w a
//                        (the column sums of a s and of b, by ColumnGrad, are dw and dgamma)
//   gate_scale:          dx := g dx (the stream's gradient, in place, after the above)
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

__device__ __forceinline__ float sigmoidf_(float z) { return 1.f / (1.f + __expf(-z)); }

template <int Dim>
__global__ void gated_skip_forward_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                          const float* __restrict__ gamma, const float* __restrict__ s, std::size_t n,
                                          float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int c = int(i % Dim);
  const float g = sigmoidf_(gamma[c]);
  out[i] = g * x[i] + (1.f - g) * w[c] * s[i];
}

template <int Dim>
__global__ void gated_skip_backward_kernel(const float* __restrict__ dout, const float* __restrict__ x,
                                           const float* __restrict__ w, const float* __restrict__ gamma,
                                           const float* __restrict__ s, std::size_t n, float* __restrict__ dskip,
                                           float* __restrict__ a, float* __restrict__ b) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int c = int(i % Dim);
  const float g = sigmoidf_(gamma[c]), d = dout[i];
  a[i] = (1.f - g) * d;
  b[i] = g * (1.f - g) * (x[i] - w[c] * s[i]) * d;
  dskip[i] += w[c] * a[i];
}

template <int Dim>
__global__ void gate_scale_kernel(const float* __restrict__ gamma, std::size_t n, float* __restrict__ dx) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dx[i] *= sigmoidf_(gamma[i % Dim]);
}

}  // namespace detail

template <int Dim>
void gated_skip_forward(const float* x, const float* w, const float* gamma, const float* s, std::size_t rows,
                        float* out, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  if (n == 0) return;
  detail::gated_skip_forward_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(x, w, gamma, s, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("gated_skip_forward");
}

template <int Dim>
void gated_skip_backward(const float* dout, const float* x, const float* w, const float* gamma, const float* s,
                         std::size_t rows, float* dskip, float* a, float* b, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  if (n == 0) return;
  detail::gated_skip_backward_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(dout, x, w, gamma, s, n, dskip, a, b);
  PGOLF_CUDA_CHECK_LAUNCH("gated_skip_backward");
}

template <int Dim>
void gate_scale(const float* gamma, std::size_t rows, float* dx, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  if (n == 0) return;
  detail::gate_scale_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(gamma, n, dx);
  PGOLF_CUDA_CHECK_LAUNCH("gate_scale");
}

}  // namespace pgolf::ops::cuda
