// Shared value embedding on the GPU (nn/value_embedding.hpp): the elementwise parts around its two
// products, with v in attention's head-major layout [B, G, T, Hd] and the projection raw = Eve[ids]
// Pve^T token-major [N, G * Hd] (n = b T + t).
//   ve_add_forward:   out = v + lambda sigma raw                         (bf16, head-major)
//   ve_backward_rows: gs = lambda sigma dv (token-major bf16), rowdot[n] = sum_o dv[n, o] raw[n, o]
//   ve_scalar_grads:  s = fixed-order sum of rowdot; dlambda += sigma s; dsigma += lambda s
// lambda and sigma are read on the device (the fp32 master parameters). No atomics: the same bits
// every run.
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

struct VeShape {
  int B, T, G, Hd;
  __host__ __device__ std::size_t tokens() const { return std::size_t(B) * T; }
  __host__ __device__ int kv() const { return G * Hd; }
  // Token-major index of head-major element i.
  __device__ std::size_t token_major(std::size_t i) const {
    const int d = int(i % Hd);
    std::size_t rest = i / Hd;
    const std::size_t t = rest % T;
    rest /= T;
    const int g = int(rest % G);
    const std::size_t b = rest / G;
    return (b * T + t) * std::size_t(kv()) + std::size_t(g) * Hd + d;
  }
};

namespace detail {

__global__ inline void ve_add_forward_kernel(const bf16* __restrict__ v, const float* __restrict__ raw,
                                             const float* __restrict__ lambda, const float* __restrict__ sigma,
                                             VeShape s, bf16* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= s.tokens() * std::size_t(s.kv())) return;
  const float ls = lambda[0] * sigma[0];
  out[i] = from_float<bf16>(to_float(v[i]) + ls * raw[s.token_major(i)]);
}

// One warp per token n (head-major dv read with a stride per head).
__global__ inline void ve_backward_rows_kernel(const float* __restrict__ dv, const float* __restrict__ raw,
                                               const float* __restrict__ lambda, const float* __restrict__ sigma,
                                               VeShape s, bf16* __restrict__ gs, float* __restrict__ rowdot) {
  const std::size_t n = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= s.tokens()) return;
  const float ls = lambda[0] * sigma[0];
  const std::size_t b = n / s.T, t = n % s.T;
  const int K = s.kv();
  float acc = 0.f;
  for (int o = lane; o < K; o += 32) {
    const int g = o / s.Hd, d = o % s.Hd;
    const float gv = dv[((b * s.G + g) * s.T + t) * s.Hd + d];
    acc += gv * raw[n * K + o];
    gs[n * K + o] = from_float<bf16>(ls * gv);
  }
  acc = warp_sum(acc);
  if (lane == 0) rowdot[n] = acc;
}

__global__ inline void ve_scalar_grads_kernel(const float* __restrict__ rowdot, std::size_t n,
                                              const float* __restrict__ lambda, const float* __restrict__ sigma,
                                              float* __restrict__ dlambda, float* __restrict__ dsigma) {
  double acc = 0;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) acc += double(rowdot[i]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    dlambda[0] += float(double(sigma[0]) * acc);
    dsigma[0] += float(double(lambda[0]) * acc);
  }
}

}  // namespace detail

inline void ve_add_forward(const bf16* v, const float* raw, const float* lambda, const float* sigma, const VeShape& s,
                           bf16* out, cudaStream_t st = nullptr) {
  const std::size_t n = s.tokens() * std::size_t(s.kv());
  if (n == 0) return;
  detail::ve_add_forward_kernel<<<blocks_for(n, 256), 256, 0, st>>>(v, raw, lambda, sigma, s, out);
  PGOLF_CUDA_CHECK_LAUNCH("ve_add_forward");
}

inline void ve_backward_rows(const float* dv, const float* raw, const float* lambda, const float* sigma,
                             const VeShape& s, bf16* gs, float* rowdot, cudaStream_t st = nullptr) {
  if (s.tokens() == 0) return;
  detail::ve_backward_rows_kernel<<<row_blocks(s.tokens()), 32 * kWarpsPerBlock, 0, st>>>(dv, raw, lambda, sigma, s,
                                                                                           gs, rowdot);
  PGOLF_CUDA_CHECK_LAUNCH("ve_backward_rows");
}

inline void ve_scalar_grads(const float* rowdot, std::size_t n, const float* lambda, const float* sigma, float* dlambda,
                            float* dsigma, cudaStream_t st = nullptr) {
  detail::ve_scalar_grads_kernel<<<1, 1024, 0, st>>>(rowdot, n, lambda, sigma, dlambda, dsigma);
  PGOLF_CUDA_CHECK_LAUNCH("ve_scalar_grads");
}

}  // namespace pgolf::ops::cuda
