// Q/K RMSNorm + RoPE (partial dims), fused, with the head-major re-layout for attention.
//
// Input: the fused q|k|v projection qkv [N, (H + 2G) * Hd] (bf16, tokens n = b*T + t). One warp
// per (token, head slot): a q or k slot is RMS-normalised over Hd, rotated on its first RopeDims
// dims (half-split pairs (i, i + RopeDims/2), as the reference); v is only re-laid out. Outputs
// are head-major, q [B, H, T, Hd] and k, v [B, G, T, Hd], so each (batch, KV head) pair is a
// contiguous matrix for the attention products. The query gain is applied inside attention (where
// its gradient can be taken from fp32 scores). The backward mirrors the forward.
// Floor: one read of qkv and one write of q, k, v (both directions), i.e. bandwidth-bound.
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

struct QkvShape {
  int B, T, H, G;
  __host__ __device__ std::size_t tokens() const { return std::size_t(B) * T; }
};

namespace detail {

// This warp's (token, head slot) and lane.
struct Item {
  std::size_t n;
  int slot, slots, warp, lane;
  bool valid;
  __device__ static Item of(const QkvShape& s) {
    Item it;
    it.slots = s.H + 2 * s.G;
    const std::size_t item = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    it.warp = threadIdx.x / 32;
    it.lane = threadIdx.x % 32;
    it.valid = item < s.tokens() * it.slots;
    it.n = item / it.slots;
    it.slot = int(item % it.slots);
    return it;
  }
};

template <int Hd>
__device__ __forceinline__ std::size_t head_major(const QkvShape& s, std::size_t n, int head, int heads) {
  const std::size_t b = n / s.T, t = n % s.T;
  return ((b * heads + head) * s.T + t) * Hd;
}

template <int Hd, int RopeDims>
__global__ void qk_norm_rope_forward_kernel(const bf16* __restrict__ qkv, QkvShape s, const float* __restrict__ cos_t,
                                            const float* __restrict__ sin_t, float eps,
                                            bf16* __restrict__ q, bf16* __restrict__ k, bf16* __restrict__ v,
                                            float* __restrict__ rstd_q, float* __restrict__ rstd_k) {
  static_assert(Hd % 32 == 0, "head dim must be a multiple of 32");
  constexpr int kPer = Hd / 32, kHalf = RopeDims / 2;
  __shared__ float row_buf[kWarpsPerBlock][Hd];
  const Item it = Item::of(s);
  if (!it.valid) return;
  const int slots = it.slots, slot = it.slot, w = it.warp, lane = it.lane;
  const std::size_t n = it.n;
  const bf16* in = qkv + n * std::size_t(slots) * Hd + std::size_t(slot) * Hd;
  float x[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) x[i] = to_float(in[lane + 32 * i]);
  if (slot >= s.H + s.G) {  // v: re-layout only
    bf16* out = v + head_major<Hd>(s, n, slot - s.H - s.G, s.G);
#pragma unroll
    for (int i = 0; i < kPer; ++i) out[lane + 32 * i] = in[lane + 32 * i];
    return;
  }
  const bool is_q = slot < s.H;
  const int head = is_q ? slot : slot - s.H;
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) ss += x[i] * x[i];
  const float r = rsqrtf(warp_sum(ss) / float(Hd) + eps);
  if (lane == 0) (is_q ? rstd_q[n * s.H + head] : rstd_k[n * s.G + head]) = r;
#pragma unroll
  for (int i = 0; i < kPer; ++i) row_buf[w][lane + 32 * i] = x[i] * r;
  __syncwarp();
  const int t = int(n % s.T);
  bf16* out = is_q ? q + head_major<Hd>(s, n, head, s.H) : k + head_major<Hd>(s, n, head, s.G);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    float y = row_buf[w][d];
    if (d < kHalf) {
      const float c = cos_t[t * kHalf + d], sn = sin_t[t * kHalf + d];
      y = row_buf[w][d] * c + row_buf[w][d + kHalf] * sn;
    } else if (d < RopeDims) {
      const float c = cos_t[t * kHalf + d - kHalf], sn = sin_t[t * kHalf + d - kHalf];
      y = -row_buf[w][d - kHalf] * sn + row_buf[w][d] * c;
    }
    out[d] = from_float<bf16>(y);
  }
}

template <int Hd, int RopeDims>
__global__ void qk_norm_rope_backward_kernel(const float* __restrict__ dq, const float* __restrict__ dk,
                                             const float* __restrict__ dv, const bf16* __restrict__ qkv, QkvShape s,
                                             const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                                             const float* __restrict__ rstd_q, const float* __restrict__ rstd_k,
                                             bf16* __restrict__ dqkv) {
  constexpr int kPer = Hd / 32, kHalf = RopeDims / 2;
  __shared__ float nbuf[kWarpsPerBlock][Hd];
  __shared__ float gbuf[kWarpsPerBlock][Hd];
  const Item it = Item::of(s);
  if (!it.valid) return;
  const int slots = it.slots, slot = it.slot, w = it.warp, lane = it.lane;
  const std::size_t n = it.n;
  bf16* out = dqkv + n * std::size_t(slots) * Hd + std::size_t(slot) * Hd;
  if (slot >= s.H + s.G) {
    const float* src = dv + head_major<Hd>(s, n, slot - s.H - s.G, s.G);
#pragma unroll
    for (int i = 0; i < kPer; ++i) out[lane + 32 * i] = from_float<bf16>(src[lane + 32 * i]);
    return;
  }
  const bool is_q = slot < s.H;
  const int head = is_q ? slot : slot - s.H;
  const float r = is_q ? rstd_q[n * s.H + head] : rstd_k[n * s.G + head];
  const float* src = is_q ? dq + head_major<Hd>(s, n, head, s.H) : dk + head_major<Hd>(s, n, head, s.G);
  const bf16* in = qkv + n * std::size_t(slots) * Hd + std::size_t(slot) * Hd;
  float nv[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    nv[i] = to_float(in[d]) * r;
    nbuf[w][d] = nv[i];
    gbuf[w][d] = src[d];  // d loss / d rope(norm)
  }
  __syncwarp();
  const int t = int(n % s.T);
  float gn[kPer], dot = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    float grad = gbuf[w][d];  // (R^T dy)_d
    if (d < kHalf) {
      const float c = cos_t[t * kHalf + d], sn = sin_t[t * kHalf + d];
      grad = gbuf[w][d] * c - gbuf[w][d + kHalf] * sn;
    } else if (d < RopeDims) {
      const float c = cos_t[t * kHalf + d - kHalf], sn = sin_t[t * kHalf + d - kHalf];
      grad = gbuf[w][d - kHalf] * sn + gbuf[w][d] * c;
    }
    gn[i] = grad;
    dot += gn[i] * nv[i];
  }
  const float mean = warp_sum(dot) / float(Hd);
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[lane + 32 * i] = from_float<bf16>(r * (gn[i] - nv[i] * mean));
}

}  // namespace detail

template <int Hd, int RopeDims>
void qk_norm_rope_forward(const bf16* qkv, const QkvShape& s, const float* cos_t, const float* sin_t, float eps, bf16* q, bf16* k, bf16* v, float* rstd_q, float* rstd_k,
                          cudaStream_t st = nullptr) {
  const std::size_t items = s.tokens() * std::size_t(s.H + 2 * s.G);
  detail::qk_norm_rope_forward_kernel<Hd, RopeDims>
      <<<row_blocks(items), 32 * kWarpsPerBlock, 0, st>>>(qkv, s, cos_t, sin_t, eps, q, k, v, rstd_q, rstd_k);
  PGOLF_CUDA_CHECK_LAUNCH("qk_norm_rope_forward");
}

// dq [B,H,T,Hd], dk, dv [B,G,T,Hd] (fp32) -> dqkv [N, (H+2G)*Hd] (bf16).
template <int Hd, int RopeDims>
void qk_norm_rope_backward(const float* dq, const float* dk, const float* dv, const bf16* qkv, const QkvShape& s,
                           const float* cos_t, const float* sin_t, const float* rstd_q, const float* rstd_k,
                           bf16* dqkv, cudaStream_t st = nullptr) {
  const std::size_t items = s.tokens() * std::size_t(s.H + 2 * s.G);
  detail::qk_norm_rope_backward_kernel<Hd, RopeDims><<<row_blocks(items), 32 * kWarpsPerBlock, 0, st>>>(
      dq, dk, dv, qkv, s, cos_t, sin_t, rstd_q, rstd_k, dqkv);
  PGOLF_CUDA_CHECK_LAUNCH("qk_norm_rope_backward");
}

}  // namespace pgolf::ops::cuda
