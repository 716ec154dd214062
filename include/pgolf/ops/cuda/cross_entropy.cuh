// Logit softcap + cross-entropy on the GPU, one warp per row with the vocabulary a compile-time
// constant (each lane streams V/32 logits as 16-byte vectors; the forward keeps a running
// logsumexp, not the row, so any vocabulary fits in registers).
//   forward:  z = cap * tanh(l / cap);  lse = logsumexp(z);  loss_n = lse - z[y_n]   (row losses, lse)
//   backward: dl = scale * (exp(z - lse) - onehot(y)) * (1 - (z / cap)^2)  (may be written over l)
// A row whose target is < 0 is not scored: its loss and its gradient are 0.
// The logits are written once by the head's product (bf16) and read once in each direction; no
// fp32 logits tensor is materialised. The mean loss is a fixed-order sum of the row losses.
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

namespace detail {

// Each lane owns V/256 runs of 8 consecutive logits, read and written as 16-byte vectors.
template <int V>
struct CeLayout {
  static_assert(V % 256 == 0, "the CUDA cross-entropy kernels need the vocabulary to be a multiple of 256");
  static constexpr int kVecs = V / 256;
  __device__ static int col(int lane, int v) { return 8 * (lane + 32 * v); }
};

// The row a warp of the row kernels below (and of asym_softcap.cuh's, distill.cuh's) works on, its
// lane and its target; live is false past the last row. A target < 0 is not scored (every output of
// the row is 0); one >= V is a caller's bug (targets are validated upstream): its outputs are NaN
// and nothing is read out of bounds.
struct CeRow {
  std::size_t row;
  int lane, y;
  bool live;
};
__device__ __forceinline__ CeRow ce_row(const std::int32_t* targets, std::size_t rows) {
  const std::size_t row = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const bool live = row < rows;
  return {row, int(threadIdx.x % 32), live ? int(targets[row]) : -1, live};
}
template <int V>
__device__ __forceinline__ bool ce_scored(int y) { return y >= 0 && y < V; }
__device__ __forceinline__ float ce_unscored_value(int y) { return y < 0 ? 0.f : NAN; }

__device__ __forceinline__ void load8(const bf16* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void store8(bf16* p, const float* in) {
  uint4 raw;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

// A lane's running logsumexp over the runs it reads (m: max so far, s: sum of exp(z - m)), one run
// of 8 at a time, so the forward streams its row: holding V/32 logits per lane in registers spills
// from V = 8192 on (255 registers and 164 bytes of spills per thread, ptxas on sm_90).
__device__ __forceinline__ void lse_add8(const float (&z)[8], float& m, float& s) {
  float top = z[0];
#pragma unroll
  for (int e = 1; e < 8; ++e) top = fmaxf(top, z[e]);
  const float next = fmaxf(m, top);
  s *= __expf(m - next);  // 0 for the first run (m = -inf)
#pragma unroll
  for (int e = 0; e < 8; ++e) s += __expf(z[e] - next);
  m = next;
}
// The row's logsumexp from its lanes' (m, s), on every lane.
__device__ __forceinline__ float lse_warp(float m, float s) {
  const float top = warp_max(m);
  return top + __logf(warp_sum(s * __expf(m - top)));
}

template <int V>
__global__ void softcap_ce_forward_kernel(const bf16* __restrict__ logits, const std::int32_t* __restrict__ targets,
                                          std::size_t rows, float cap, float* __restrict__ row_loss,
                                          float* __restrict__ lse) {
  using L = CeLayout<V>;
  const auto [row, lane, y, live] = ce_row(targets, rows);
  if (!live) return;
  if (!ce_scored<V>(y)) {
    if (lane == 0) row_loss[row] = lse[row] = ce_unscored_value(y);
    return;
  }
  float m = -INFINITY, s = 0.f, zy = 0.f;
#pragma unroll 4
  for (int v = 0; v < L::kVecs; ++v) {
    float z[8];
    load8(logits + row * V + L::col(lane, v), z);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
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
__global__ void softcap_ce_backward_kernel(const bf16* logits, const std::int32_t* __restrict__ targets,
                                           const float* __restrict__ lse, std::size_t rows, float cap, float scale,
                                           bf16* dlogits) {
  using L = CeLayout<V>;
  const auto [row, lane, y, live] = ce_row(targets, rows);
  if (!live) return;
  const float l = lse[row];
#pragma unroll
  for (int v = 0; v < L::kVecs; ++v) {
    const std::size_t at = row * V + L::col(lane, v);
    float x[8];
    load8(logits + at, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float th = tanhf(x[e] / cap);
      const float dz = scale * (__expf(cap * th - l) - (L::col(lane, v) + e == y ? 1.f : 0.f));
      x[e] = y < 0 ? 0.f : dz * (1.f - th * th);
    }
    store8(dlogits + at, x);
  }
}

// Fixed-order sum of n floats in double by one block.
__global__ inline void ordered_sum_kernel(const float* __restrict__ x, std::size_t n, double* __restrict__ out) {
  double s = 0;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) s += double(x[i]);
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace detail

// targets must be < V (a row at or beyond gets a NaN loss); a target < 0 is not scored.
template <int V>
void softcap_ce_forward(const bf16* logits, const std::int32_t* targets, std::size_t rows, float cap, float* row_loss,
                        float* lse, cudaStream_t st = nullptr) {
  detail::softcap_ce_forward_kernel<V>
      <<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(logits, targets, rows, cap, row_loss, lse);
  PGOLF_CUDA_CHECK_LAUNCH("softcap_ce_forward");
}

// dlogits may alias logits (the gradient written over them).
template <int V>
void softcap_ce_backward(const bf16* logits, const std::int32_t* targets, const float* lse, std::size_t rows, float cap,
                         float scale, bf16* dlogits, cudaStream_t st = nullptr) {
  detail::softcap_ce_backward_kernel<V>
      <<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(logits, targets, lse, rows, cap, scale, dlogits);
  PGOLF_CUDA_CHECK_LAUNCH("softcap_ce_backward");
}

inline void ordered_sum(const float* x, std::size_t n, double* out, cudaStream_t st = nullptr) {
  detail::ordered_sum_kernel<<<1, 1024, 0, st>>>(x, n, out);
  PGOLF_CUDA_CHECK_LAUNCH("ordered_sum");
}

}  // namespace pgolf::ops::cuda
