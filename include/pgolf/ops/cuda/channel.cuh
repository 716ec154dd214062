// Per-channel parameters on the GPU (resid_mix, attn_scale, mlp_scale, U-Net skip weights, q_gain):
// the elementwise parts of their backward and a deterministic column reduction for their gradients.
//
// A per-channel gradient is a sum over every token, d s[c] = sum_n g[n, c] * f[n, c]. Atomics would
// make it depend on scheduling; here each block sums a fixed slice of rows into its own partial row
// and a second pass adds the partials in order, so the result has the same bits every run.
#pragma once

#include <algorithm>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

template <class TF>
__global__ void col_dot_partials_kernel(const float* __restrict__ g, const TF* __restrict__ f, std::size_t rows,
                                        int width, int rows_per_part, float* __restrict__ partial) {
  const std::size_t r0 = std::size_t(blockIdx.x) * rows_per_part;
  const std::size_t r1 = std::min(rows, r0 + rows_per_part);
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    float s = 0.f;
    if (f == nullptr)  // a plain column sum (a per-channel bias's gradient)
      for (std::size_t r = r0; r < r1; ++r) s += g[r * width + c];
    else
      for (std::size_t r = r0; r < r1; ++r) s += g[r * width + c] * to_float(f[r * width + c]);
    partial[std::size_t(blockIdx.x) * width + c] = s;
  }
}

__global__ inline void col_reduce_kernel(const float* __restrict__ partial, int parts, int width, float* __restrict__ out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= width) return;
  float s = 0.f;
  for (int p = 0; p < parts; ++p) s += partial[std::size_t(p) * width + c];
  out[c] += s;
}

template <int Dim, class TOut>
__global__ void scale_grad_kernel(const float* __restrict__ g, const float* __restrict__ s, std::size_t n,
                                  TOut* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_float<TOut>(s[i % Dim] * g[i]);
}

template <int Dim>
__global__ void resid_mix_forward_kernel(const float* __restrict__ x, const float* __restrict__ x0,
                                         const float* __restrict__ mix, std::size_t n, float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int c = int(i % Dim);
  out[i] = mix[c] * x[i] + mix[Dim + c] * x0[i];
}

template <int Dim>
__global__ void resid_mix_backward_kernel(const float* __restrict__ g, const float* __restrict__ mix, std::size_t n,
                                          float* __restrict__ dx, float* __restrict__ dx0) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int c = int(i % Dim);
  const float gi = g[i];
  dx[i] = mix[c] * gi;
  dx0[i] += mix[Dim + c] * gi;
}

__global__ inline void add_into_kernel(const float* __restrict__ a, std::size_t n, float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] += a[i];
}

template <int Dim>
__global__ void scale_accumulate_kernel(const float* __restrict__ g, const float* __restrict__ s, std::size_t n,
                                        float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] += s[i % Dim] * g[i];
}

template <int Dim>
__global__ void add_channels_kernel(const float* __restrict__ x, const float* __restrict__ p, std::size_t n,
                                    float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] + p[i % Dim];
}

}  // namespace detail

// grad[c] += sum_n g[n, c] * f[n, c] (f null: sum_n g[n, c]), deterministically. Scratch is sized on
// first use.
class ColumnGrad {
 public:
  static constexpr int kRowsPerPart = 128;

  template <class TF>
  void add(const float* g, const TF* f, std::size_t rows, int width, float* grad, cudaStream_t st = nullptr) {
    const int parts = int((rows + kRowsPerPart - 1) / kRowsPerPart);
    const std::size_t need = std::size_t(parts) * width;
    if (partial_.size() < need) partial_ = pgolf::cuda::DeviceBuffer<float>(need);
    detail::col_dot_partials_kernel<TF>
        <<<parts, std::min(width, 512), 0, st>>>(g, f, rows, width, kRowsPerPart, partial_.data());
    PGOLF_CUDA_CHECK_LAUNCH("col_dot_partials");
    detail::col_reduce_kernel<<<blocks_for(std::size_t(width), 256), 256, 0, st>>>(partial_.data(), parts, width, grad);
    PGOLF_CUDA_CHECK_LAUNCH("col_reduce");
  }

 private:
  pgolf::cuda::DeviceBuffer<float> partial_;
};

// out = s (per channel) * g, in out's type (the input of the next matrix product).
template <int Dim, class TOut>
void scale_grad(const float* g, const float* s, std::size_t rows, TOut* out, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::scale_grad_kernel<Dim, TOut><<<blocks_for(n, 256), 256, 0, st>>>(g, s, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("scale_grad");
}

// out = m0*x + m1*x0 (where no norm follows to fuse it with: rmsnorm.cuh's mix_norm_forward).
template <int Dim>
void resid_mix_forward(const float* x, const float* x0, const float* mix, std::size_t rows, float* out,
                       cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::resid_mix_forward_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(x, x0, mix, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("resid_mix_forward");
}

// xin = m0*x + m1*x0:  dx = m0*g (written), dx0 += m1*g.
template <int Dim>
void resid_mix_backward(const float* g, const float* mix, std::size_t rows, float* dx, float* dx0,
                        cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::resid_mix_backward_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(g, mix, n, dx, dx0);
  PGOLF_CUDA_CHECK_LAUNCH("resid_mix_backward");
}

// out += s (per channel) * g.
template <int Dim>
void scale_accumulate(const float* g, const float* s, std::size_t rows, float* out, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::scale_accumulate_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(g, s, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("scale_accumulate");
}

// out = x + p (p per channel, broadcast over rows).
template <int Dim>
void add_channels(const float* x, const float* p, std::size_t rows, float* out, cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::add_channels_kernel<Dim><<<blocks_for(n, 256), 256, 0, st>>>(x, p, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("add_channels");
}

// out += a.
inline void add_into(const float* a, std::size_t n, float* out, cudaStream_t st = nullptr) {
  detail::add_into_kernel<<<blocks_for(n, 256), 256, 0, st>>>(a, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("add_into");
}

}  // namespace pgolf::ops::cuda
