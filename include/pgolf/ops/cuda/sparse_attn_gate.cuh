// SparseAttnGate on the GPU (nn/sparse_attn_gate.hpp): g[t, h] = sigmoid(scale * W[h, :c] . n[t, :c]),
// z_h = g y_h, and its backward. n, y, z, dz, dy bf16 token-major [tokens, dim] (head h at columns
// h*Hd..); W and its gradient fp32 [heads, c]; d n fp32 [tokens, dim].
//   forward:   a warp per (token, head): the gate (fp32, saved) and the scaled row.
//   backward:  a warp per (token, head): dy = g dz and dl = scale g (1 - g) (dz . y) (fp32 scratch);
//              a thread per element of d n: scale-folded sum_h dl W[h, j] for j < c, 0 beyond;
//              a block per element of W: sum_t dl[t, h] n[t, j] in a fixed order (no atomics).
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

struct GateDims {
  std::size_t tokens;
  int dim, H, Hd, c;
  float scale;
};

namespace detail {

__global__ inline void gate_forward_kernel(const bf16* __restrict__ n, const bf16* __restrict__ y,
                                           const float* __restrict__ W, GateDims d, float* __restrict__ gate,
                                           bf16* __restrict__ z) {
  const std::size_t w = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (w >= d.tokens * d.H) return;
  const int lane = threadIdx.x % 32, h = int(w % d.H);
  const std::size_t t = w / d.H;
  float a = 0.f;
  for (int j = lane; j < d.c; j += 32) a += W[h * d.c + j] * to_float(n[t * d.dim + j]);
  a = warp_sum(a);
  const float g = 1.f / (1.f + expf(-d.scale * a));
  if (lane == 0) gate[w] = g;
  const std::size_t at = t * d.dim + std::size_t(h) * d.Hd;
  for (int e = lane; e < d.Hd; e += 32) z[at + e] = __float2bfloat16_rn(g * to_float(y[at + e]));
}

__global__ inline void gate_backward_rows_kernel(const bf16* __restrict__ dz, const bf16* __restrict__ y,
                                                 const float* __restrict__ gate, GateDims d, float* __restrict__ dl,
                                                 bf16* __restrict__ dy) {
  const std::size_t w = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (w >= d.tokens * d.H) return;
  const int lane = threadIdx.x % 32, h = int(w % d.H);
  const std::size_t t = w / d.H;
  const float g = gate[w];
  const std::size_t at = t * d.dim + std::size_t(h) * d.Hd;
  float dot = 0.f;
  for (int e = lane; e < d.Hd; e += 32) {
    const float gz = to_float(dz[at + e]);
    dot += gz * to_float(y[at + e]);
    dy[at + e] = __float2bfloat16_rn(g * gz);
  }
  dot = warp_sum(dot);
  if (lane == 0) dl[w] = d.scale * g * (1.f - g) * dot;
}

__global__ inline void gate_backward_input_kernel(const float* __restrict__ dl, const float* __restrict__ W,
                                                  GateDims d, bool accumulate, float* __restrict__ dn) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.tokens * d.dim) return;
  const int j = int(i % d.dim);
  const std::size_t t = i / d.dim;
  float s = 0.f;
  if (j < d.c)
    for (int h = 0; h < d.H; ++h) s += dl[t * d.H + h] * W[h * d.c + j];
  dn[i] = accumulate ? dn[i] + s : s;
}

// One block per element (h, j) of W: dW[h, j] += sum_t dl[t, h] n[t, j], each thread a fixed stride
// of tokens, then a fixed-order block reduction.
__global__ inline void gate_weight_grad_kernel(const float* __restrict__ dl, const bf16* __restrict__ n, GateDims d,
                                               float* __restrict__ dW) {
  const int h = blockIdx.x / d.c, j = blockIdx.x % d.c;
  float s = 0.f;
  for (std::size_t t = threadIdx.x; t < d.tokens; t += blockDim.x) s += dl[t * d.H + h] * to_float(n[t * d.dim + j]);
  s = block_sum(s);
  if (threadIdx.x == 0) dW[blockIdx.x] += s;
}

}  // namespace detail

inline void sparse_attn_gate_forward(const bf16* n, const bf16* y, const float* W, GateDims d, float* gate, bf16* z,
                                     cudaStream_t st = nullptr) {
  detail::gate_forward_kernel<<<row_blocks(d.tokens * d.H), 32 * kWarpsPerBlock, 0, st>>>(n, y, W, d, gate, z);
  PGOLF_CUDA_CHECK_LAUNCH("sparse_attn_gate_forward");
}

// dy (written), dn (written over the whole row, or added to when accumulate), dW (added to); dl is
// [tokens, heads] scratch.
inline void sparse_attn_gate_backward(const bf16* dz, const bf16* n, const bf16* y, const float* W, const float* gate,
                                      GateDims d, bool accumulate, float* dl, bf16* dy, float* dn, float* dW,
                                      cudaStream_t st = nullptr) {
  detail::gate_backward_rows_kernel<<<row_blocks(d.tokens * d.H), 32 * kWarpsPerBlock, 0, st>>>(dz, y, gate, d, dl,
                                                                                                  dy);
  PGOLF_CUDA_CHECK_LAUNCH("sparse_attn_gate_backward_rows");
  detail::gate_backward_input_kernel<<<blocks_for(d.tokens * d.dim, 256), 256, 0, st>>>(dl, W, d, accumulate, dn);
  PGOLF_CUDA_CHECK_LAUNCH("sparse_attn_gate_backward_input");
  detail::gate_weight_grad_kernel<<<d.H * d.c, 256, 0, st>>>(dl, n, d, dW);
  PGOLF_CUDA_CHECK_LAUNCH("sparse_attn_gate_weight_grad");
}

}  // namespace pgolf::ops::cuda
