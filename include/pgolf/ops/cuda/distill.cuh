// Self-distillation on the GPU, fused with the logit softcap (the reference: ops/cpu/distill.hpp,
// applied to capped logits). Student and teacher logits are the head products' raw bf16 values of
// the same batch; both are capped here, z = cap * tanh(l / cap), k = 1 / tau. One warp per row:
//   forward:  lse1 = logsumexp(z_s), lse_s = logsumexp(k z_s), lse_t = logsumexp(k z_t);
//             ce_n = lse1 - z_s[y_n];  kl_n = sum_i p_t,i (k z_t,i - lse_t - k z_s,i + lse_s)
//   backward: dl = (a_ce (exp(z_s - lse1) - onehot(y)) + a_kl (exp(k z_s - lse_s) - exp(k z_t - lse_t)))
//                  * (1 - (z_s / cap)^2)
// with a_ce, a_kl from distill_scales() and the loss from distill_loss() over the ordered sums of
// ce_n and kl_n. A row whose target is < 0 is not scored: 0 in every output.
// The rows are re-read from memory in each pass (maxima, sums, KL) rather than held in registers:
// two rows of a large vocabulary would not fit, and distillation is a short end phase.
#pragma once

#include "pgolf/ops/cuda/common.cuh"
#include "pgolf/ops/cuda/cross_entropy.cuh"

namespace pgolf::ops::cuda {

namespace detail {

template <int V>
__global__ void softcap_distill_forward_kernel(const bf16* __restrict__ zs, const bf16* __restrict__ zt,
                                               const std::int32_t* __restrict__ targets, std::size_t rows, float cap,
                                               float k, float* __restrict__ row_ce, float* __restrict__ row_kl,
                                               float* __restrict__ lse) {
  using L = CeLayout<V>;
  const auto [row, lane, y, live] = ce_row(targets, rows);
  if (!live) return;
  float* out = lse + 3 * row;  // lse1, lse_s, lse_t
  if (!ce_scored<V>(y)) {
    if (lane == 0) row_ce[row] = row_kl[row] = out[0] = out[1] = out[2] = ce_unscored_value(y);
    return;
  }
  const bf16 *s_row = zs + row * V, *t_row = zt + row * V;
  float ms = -INFINITY, mt = -INFINITY;
  for (int v = 0; v < L::kVecs; ++v) {
    float a[8], b[8];
    load8(s_row + L::col(lane, v), a), load8(t_row + L::col(lane, v), b);
#pragma unroll
    for (int e = 0; e < 8; ++e) ms = fmaxf(ms, cap * tanhf(a[e] / cap)), mt = fmaxf(mt, cap * tanhf(b[e] / cap));
  }
  ms = warp_max(ms), mt = warp_max(mt);
  float s1 = 0.f, ss = 0.f, st = 0.f, zy = 0.f;  // k > 0: the max of k z is k times the max of z
  for (int v = 0; v < L::kVecs; ++v) {
    float a[8], b[8];
    load8(s_row + L::col(lane, v), a), load8(t_row + L::col(lane, v), b);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float z = cap * tanhf(a[e] / cap), t = cap * tanhf(b[e] / cap);
      s1 += __expf(z - ms), ss += __expf((z - ms) * k), st += __expf((t - mt) * k);
      if (L::col(lane, v) + e == y) zy = z;
    }
  }
  s1 = warp_sum(s1), ss = warp_sum(ss), st = warp_sum(st), zy = warp_sum(zy);
  const float lse1 = ms + __logf(s1), lse_s = ms * k + __logf(ss), lse_t = mt * k + __logf(st);
  float kl = 0.f;
  for (int v = 0; v < L::kVecs; ++v) {
    float a[8], b[8];
    load8(s_row + L::col(lane, v), a), load8(t_row + L::col(lane, v), b);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float lt = k * cap * tanhf(b[e] / cap) - lse_t, ls = k * cap * tanhf(a[e] / cap) - lse_s;
      kl += __expf(lt) * (lt - ls);
    }
  }
  kl = warp_sum(kl);
  if (lane == 0) {
    row_ce[row] = lse1 - zy;
    row_kl[row] = kl;
    out[0] = lse1, out[1] = lse_s, out[2] = lse_t;
  }
}

template <int V>
__global__ void softcap_distill_backward_kernel(const bf16* zs, const bf16* __restrict__ zt,
                                                const std::int32_t* __restrict__ targets,
                                                const float* __restrict__ lse, std::size_t rows, float cap, float k,
                                                float a_ce, float a_kl, bf16* dlogits) {
  using L = CeLayout<V>;
  const auto [row, lane, y, live] = ce_row(targets, rows);
  if (!live) return;
  const float lse1 = lse[3 * row], lse_s = lse[3 * row + 1], lse_t = lse[3 * row + 2];
  for (int v = 0; v < L::kVecs; ++v) {
    const std::size_t at = row * V + L::col(lane, v);
    float a[8], b[8];
    load8(zs + at, a), load8(zt + at, b);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float th = tanhf(a[e] / cap), z = cap * th, t = cap * tanhf(b[e] / cap);
      const float dz = a_ce * (__expf(z - lse1) - (L::col(lane, v) + e == y ? 1.f : 0.f)) +
                       a_kl * (__expf(k * z - lse_s) - __expf(k * t - lse_t));
      a[e] = y < 0 ? 0.f : dz * (1.f - th * th);
    }
    store8(dlogits + at, a);
  }
}

}  // namespace detail

// row_ce, row_kl: [rows]; lse: [rows, 3] for the backward. targets must be < V (a row at or beyond
// gets NaN); k = 1 / tau.
template <int V>
void softcap_distill_forward(const bf16* zs, const bf16* zt, const std::int32_t* targets, std::size_t rows, float cap,
                             float k, float* row_ce, float* row_kl, float* lse, cudaStream_t st = nullptr) {
  detail::softcap_distill_forward_kernel<V>
      <<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(zs, zt, targets, rows, cap, k, row_ce, row_kl, lse);
  PGOLF_CUDA_CHECK_LAUNCH("softcap_distill_forward");
}

// dlogits may alias zs (the gradient written over the student's logits), never zt.
template <int V>
void softcap_distill_backward(const bf16* zs, const bf16* zt, const std::int32_t* targets, const float* lse,
                              std::size_t rows, float cap, float k, float a_ce, float a_kl, bf16* dlogits,
                              cudaStream_t st = nullptr) {
  detail::softcap_distill_backward_kernel<V>
      <<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(zs, zt, targets, lse, rows, cap, k, a_ce, a_kl, dlogits);
  PGOLF_CUDA_CHECK_LAUNCH("softcap_distill_backward");
}

}  // namespace pgolf::ops::cuda
