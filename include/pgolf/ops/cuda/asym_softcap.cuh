// AsymLogit + cross-entropy on the GPU (nn/asym_softcap.hpp), the layout and passes of
// cross_entropy.cuh's symmetric kernels with two caps read on the device, c = sp for l >= 0, sn else:
//   forward:  z = c tanh(l / c);  lse = logsumexp(z);  loss_n = lse - z[y_n]
//   backward: g = scale (exp(z - lse) - onehot(y));  dl = g (1 - tanh^2(l / c));
//             per row the partials sum over l >= 0 (resp. < 0) of g (tanh u - u (1 - tanh^2 u)), u = l / c,
//             then one block adds each cap's partials in a fixed order into its gradient.
// A row whose target is < 0 is not scored: its loss, gradient and partials are 0.
#pragma once

#include "pgolf/ops/cuda/common.cuh"
#include "pgolf/ops/cuda/cross_entropy.cuh"

namespace pgolf::ops::cuda {

namespace detail {

template <int V>
__global__ void asym_softcap_ce_forward_kernel(const bf16* __restrict__ logits, const std::int32_t* __restrict__ targets,
                                               std::size_t rows, const float* __restrict__ sp_p,
                                               const float* __restrict__ sn_p, float* __restrict__ row_loss,
                                               float* __restrict__ lse) {
  using L = CeLayout<V>;
  const auto [row, lane, y, live] = ce_row(targets, rows);
  if (!live) return;
  if (!ce_scored<V>(y)) {
    if (lane == 0) row_loss[row] = lse[row] = ce_unscored_value(y);
    return;
  }
  const float sp = sp_p[0], sn = sn_p[0];
  float m = -INFINITY, s = 0.f, zy = 0.f;
#pragma unroll 4
  for (int v = 0; v < L::kVecs; ++v) {
    float z[8];
    load8(logits + row * V + L::col(lane, v), z);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float cap = z[e] >= 0.f ? sp : sn;
      z[e] = cap * tanhf(z[e] / cap);
      if (L::col(lane, v) + e == y) zy = z[e];
    }
    lse_add8(z, m, s);
  }
  const float l = lse_warp(m, s);
  zy = warp_sum(zy);
  if (lane == 0) {
    lse[row] = l;
    row_loss[row] = l - zy;
  }
}

template <int V>
__global__ void asym_softcap_ce_backward_kernel(const bf16* logits, const std::int32_t* __restrict__ targets,
                                                const float* __restrict__ lse, std::size_t rows,
                                                const float* __restrict__ sp_p, const float* __restrict__ sn_p,
                                                float scale, bf16* dlogits, float* __restrict__ part) {
  using L = CeLayout<V>;
  const auto [row, lane, y, live] = ce_row(targets, rows);
  if (!live) return;
  const float l = lse[row], sp = sp_p[0], sn = sn_p[0];
  float pp = 0.f, pn = 0.f;
#pragma unroll
  for (int v = 0; v < L::kVecs; ++v) {
    const std::size_t at = row * V + L::col(lane, v);
    float x[8];
    load8(logits + at, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const bool pos = x[e] >= 0.f;
      const float cap = pos ? sp : sn, u = x[e] / cap, th = tanhf(u), sech2 = 1.f - th * th;
      const float g = y < 0 ? 0.f : scale * (__expf(cap * th - l) - (L::col(lane, v) + e == y ? 1.f : 0.f));
      (pos ? pp : pn) += g * (th - u * sech2);
      x[e] = g * sech2;
    }
    store8(dlogits + at, x);
  }
  pp = warp_sum(pp);
  pn = warp_sum(pn);
  if (lane == 0) part[row] = pp, part[rows + row] = pn;
}

// grad_pos += sum of part[0..n), grad_neg += sum of part[n..2n), each in a fixed order.
__global__ inline void asym_cap_grads_kernel(const float* __restrict__ part, std::size_t n, float* __restrict__ gp,
                                             float* __restrict__ gn) {
  double a = 0, b = 0;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) a += double(part[i]), b += double(part[n + i]);
  a = block_sum(a);
  b = block_sum(b);
  if (threadIdx.x == 0) gp[0] += float(a), gn[0] += float(b);
}

}  // namespace detail

template <int V>
void asym_softcap_ce_forward(const bf16* logits, const std::int32_t* targets, std::size_t rows, const float* sp,
                             const float* sn, float* row_loss, float* lse, cudaStream_t st = nullptr) {
  detail::asym_softcap_ce_forward_kernel<V>
      <<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(logits, targets, rows, sp, sn, row_loss, lse);
  PGOLF_CUDA_CHECK_LAUNCH("asym_softcap_ce_forward");
}

// dlogits may alias logits; part: [2, rows] per-row partials of the two caps' gradients.
template <int V>
void asym_softcap_ce_backward(const bf16* logits, const std::int32_t* targets, const float* lse, std::size_t rows,
                              const float* sp, const float* sn, float scale, bf16* dlogits, float* part,
                              cudaStream_t st = nullptr) {
  detail::asym_softcap_ce_backward_kernel<V>
      <<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(logits, targets, lse, rows, sp, sn, scale, dlogits, part);
  PGOLF_CUDA_CHECK_LAUNCH("asym_softcap_ce_backward");
}

inline void asym_cap_grads(const float* part, std::size_t rows, float* grad_pos, float* grad_neg,
                           cudaStream_t st = nullptr) {
  detail::asym_cap_grads_kernel<<<1, 1024, 0, st>>>(part, rows, grad_pos, grad_neg);
  PGOLF_CUDA_CHECK_LAUNCH("asym_cap_grads");
}

}  // namespace pgolf::ops::cuda
