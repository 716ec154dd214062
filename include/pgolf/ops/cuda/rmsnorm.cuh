// Row-wise RMSNorm on the GPU, fused with what surrounds it in a block (one warp per row, the row
// width a compile-time constant so each lane keeps Dim/32 values in registers):
//   rmsnorm_forward       y = x * rstd                                  (x0 and the final norm)
//   mix_norm_forward      xin = m0*x + m1*x0;  n = norm(xin)            (resid_mix + attention norm)
//   scale_add_norm_forward x1 = a + s*f;  n = norm(x1)                  (attn_scale residual + MLP norm)
//   scale_add_forward     out = a + s*f                                 (mlp_scale residual, U-Net skips)
//   rmsnorm_backward      dx = res + rstd * (dn - n * mean(dn * n))     (n recomputed from x, rstd)
// The residual stream stays fp32; normalised outputs that feed matrix products are written in the
// product's input type (bf16). Statistics are fp32. Each fused kernel reads its inputs once and
// writes its outputs once, so its floor is those bytes over memory bandwidth.
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

template <int Dim>
struct RowShape {
  static_assert(Dim % 32 == 0, "RMSNorm kernels need the row width to be a multiple of 32");
  static constexpr int kPer = Dim / 32;  // values per lane, kept in registers
};

// The row's pre-norm values come from Pre (element index, channel) -> float; they are stored to
// `keep` when it is not null (the residual stream the backward needs), then normalised into y.
template <int Dim, class TOut, class Pre>
__global__ void pre_norm_kernel(Pre pre, std::size_t rows, float eps, float* __restrict__ keep, TOut* __restrict__ y,
                                float* __restrict__ rstd) {
  const std::size_t row = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  constexpr int kPer = RowShape<Dim>::kPer;
  float v[kPer], ss = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = lane + 32 * i;
    v[i] = pre(row * Dim + c, c);
    if (keep) keep[row * Dim + c] = v[i];
    ss += v[i] * v[i];
  }
  const float s = rsqrtf(warp_sum(ss) / float(Dim) + eps);
  if (lane == 0) rstd[row] = s;
#pragma unroll
  for (int i = 0; i < kPer; ++i) y[row * Dim + lane + 32 * i] = from_float<TOut>(v[i] * s);
}

struct Identity {
  const float* x;
  __device__ float operator()(std::size_t e, int) const { return x[e]; }
};
template <int Dim>
struct ResidMix {  // m0 * x + m1 * x0
  const float *x, *x0, *mix;
  __device__ float operator()(std::size_t e, int c) const { return mix[c] * x[e] + mix[Dim + c] * x0[e]; }
};
template <class TF>
struct ScaleAdd {  // a + s * f
  const float* a;
  const float* s;
  const TF* f;
  __device__ float operator()(std::size_t e, int c) const { return a[e] + s[c] * to_float(f[e]); }
};

template <int Dim, class TF>
__global__ void scale_add_kernel(const float* __restrict__ a, const float* __restrict__ s, const TF* __restrict__ f,
                                 std::size_t n, float* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = a[i] + s[i % Dim] * to_float(f[i]);
}

template <int Dim>
__global__ void rmsnorm_backward_kernel(const float* __restrict__ dn, const float* __restrict__ x,
                                        const float* __restrict__ rstd, std::size_t rows, const float* res,
                                        float* dx) {
  const std::size_t row = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  constexpr int kPer = RowShape<Dim>::kPer;
  const float s = rstd[row];
  float g[kPer], nv[kPer], dot = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const std::size_t e = row * Dim + lane + 32 * i;
    g[i] = dn[e];
    nv[i] = x[e] * s;
    dot += g[i] * nv[i];
  }
  const float mean = warp_sum(dot) / float(Dim);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const std::size_t e = row * Dim + lane + 32 * i;
    const float v = s * (g[i] - nv[i] * mean);
    dx[e] = res ? res[e] + v : v;
  }
}

}  // namespace detail

// Host side, after the kernels (tests/cuda_emulated copies the text up to the end of the first
// `namespace detail`, which must hold no launches).
namespace detail {
template <int Dim, class TOut, class Pre>
void launch_pre_norm(Pre pre, std::size_t rows, float eps, float* keep, TOut* y, float* rstd, cudaStream_t st,
                     const char* name) {
  pre_norm_kernel<Dim, TOut, Pre><<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(pre, rows, eps, keep, y, rstd);
  PGOLF_CUDA_CHECK_LAUNCH(name);
}
}  // namespace detail

template <int Dim, class TOut>
void rmsnorm_forward(const float* x, std::size_t rows, float eps, TOut* y, float* rstd, cudaStream_t st = nullptr) {
  detail::launch_pre_norm<Dim>(detail::Identity{x}, rows, eps, nullptr, y, rstd, st, "rmsnorm_forward");
}

template <int Dim, class TN>
void mix_norm_forward(const float* x, const float* x0, const float* mix, std::size_t rows, float eps, float* xin,
                      TN* n, float* rstd, cudaStream_t st = nullptr) {
  detail::launch_pre_norm<Dim>(detail::ResidMix<Dim>{x, x0, mix}, rows, eps, xin, n, rstd, st, "mix_norm_forward");
}

template <int Dim, class TF, class TN>
void scale_add_norm_forward(const float* a, const float* s, const TF* f, std::size_t rows, float eps, float* out,
                            TN* n, float* rstd, cudaStream_t st = nullptr) {
  detail::launch_pre_norm<Dim>(detail::ScaleAdd<TF>{a, s, f}, rows, eps, out, n, rstd, st, "scale_add_norm_forward");
}

// out = a + s (per channel) * f; out may alias a.
template <int Dim, class TF>
void scale_add_forward(const float* a, const float* s, const TF* f, std::size_t rows, float* out,
                       cudaStream_t st = nullptr) {
  const std::size_t n = rows * Dim;
  detail::scale_add_kernel<Dim, TF><<<blocks_for(n, 256), 256, 0, st>>>(a, s, f, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("scale_add_forward");
}

// dx = res + d norm(x) (res may be null, or alias dx).
template <int Dim>
void rmsnorm_backward(const float* dn, const float* x, const float* rstd, std::size_t rows, const float* res,
                      float* dx, cudaStream_t st = nullptr) {
  detail::rmsnorm_backward_kernel<Dim><<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(dn, x, rstd, rows, res, dx);
  PGOLF_CUDA_CHECK_LAUNCH("rmsnorm_backward");
}

}  // namespace pgolf::ops::cuda
