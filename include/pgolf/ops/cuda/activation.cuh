// The MLP's squared activations on the GPU (relu^2, or LeakyReLU(0.5)^2 as the CPU reference),
// elementwise over the fc output. Forward writes act from u; backward writes du = dact * f'(u)
// (in place of dact or into its own buffer). Bandwidth-bound: one read and one write per element each way.
#pragma once

#include "pgolf/ops/activation_kind.hpp"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

template <Activation A>
__device__ __forceinline__ float act_slope() {
  return A == Activation::leaky_relu2 ? 0.5f : 0.f;  // as the CPU reference
}

template <Activation A>
__global__ void activation_forward_kernel(const bf16* __restrict__ u, std::size_t n, bf16* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = __bfloat162float(u[i]);
  const float r = x > 0.f ? x : act_slope<A>() * x;
  out[i] = __float2bfloat16_rn(r * r);
}

template <Activation A>
__global__ void activation_backward_kernel(const bf16* g, const bf16* __restrict__ u, std::size_t n, bf16* du) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = __bfloat162float(u[i]);
  const float slope = x > 0.f ? 1.f : act_slope<A>();
  du[i] = __float2bfloat16_rn(__bfloat162float(g[i]) * 2.f * slope * slope * x);
}

}  // namespace detail

template <Activation A>
void activation_forward(const bf16* u, std::size_t n, bf16* out, cudaStream_t st = nullptr) {
  detail::activation_forward_kernel<A><<<blocks_for(n, 256), 256, 0, st>>>(u, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("activation_forward");
}

// du = d act * f'(u); du may alias g (d act).
template <Activation A>
void activation_backward(const bf16* g, const bf16* u, std::size_t n, bf16* du, cudaStream_t st = nullptr) {
  detail::activation_backward_kernel<A><<<blocks_for(n, 256), 256, 0, st>>>(g, u, n, du);
  PGOLF_CUDA_CHECK_LAUNCH("activation_backward");
}
// In place: g holds d act in and d u out.
template <Activation A>
void activation_backward(bf16* g, const bf16* u, std::size_t n, cudaStream_t st = nullptr) {
  activation_backward<A>(g, u, n, g, st);
}

}  // namespace pgolf::ops::cuda
