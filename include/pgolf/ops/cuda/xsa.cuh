// XSA on the GPU (nn/xsa.hpp): z_h = y_h - (y_h . n) n, n = v_g / max(||v_g||, eps), and its backward.
// One warp per (token, KV head): each lane holds Hd / 32 elements of v_g, n and d n in registers and
// walks the group's query heads; every sum is a warp reduction in fp32 (no atomics: each warp
// writes only its own token's rows).
//
// Layouts: y, z, dz, dy bf16 token-major [B*T, H*Hd]; v bf16 head-major [B, G, T, Hd]; dv fp32 in v's
// layout.
#pragma once

#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

struct XsaDims {
  int B, T, H, G;
  __host__ __device__ std::size_t warps() const { return std::size_t(B) * T * G; }
};

namespace detail {

// The warp's (token, KV head): w = (b*T + t)*G + g; the token's h rows and the pair's v row.
template <int Hd>
struct XsaWarp {
  std::size_t tok, vrow;
  int g, lane;
  __device__ bool locate(const XsaDims& d) {
    const std::size_t w = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (w >= d.warps()) return false;
    lane = threadIdx.x % 32;
    g = int(w % d.G);
    tok = w / d.G;
    const std::size_t b = tok / d.T, t = tok % d.T;
    vrow = ((b * d.G + g) * d.T + t) * Hd;
    return true;
  }
};

// n (this lane's elements e = lane + 32 i) and ||v||.
template <int Hd>
__device__ float xsa_direction(const bf16* __restrict__ v, int lane, float eps, float (&n)[Hd / 32]) {
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < Hd / 32; ++i) {
    n[i] = to_float(v[lane + 32 * i]);
    ss += n[i] * n[i];
  }
  const float norm = sqrtf(warp_sum(ss));
  const float inv = 1.f / fmaxf(norm, eps);
#pragma unroll
  for (int i = 0; i < Hd / 32; ++i) n[i] *= inv;
  return norm;
}

template <int Hd>
__global__ void xsa_forward_kernel(const bf16* __restrict__ y, const bf16* __restrict__ v, XsaDims d, float eps,
                                   bf16* __restrict__ z) {
  XsaWarp<Hd> w;
  if (!w.locate(d)) return;
  float n[Hd / 32];
  xsa_direction<Hd>(v + w.vrow, w.lane, eps, n);
  const int r = d.H / d.G;
  for (int j = 0; j < r; ++j) {
    const std::size_t at = w.tok * std::size_t(d.H) * Hd + std::size_t(w.g * r + j) * Hd;
    float yv[Hd / 32], s = 0.f;
#pragma unroll
    for (int i = 0; i < Hd / 32; ++i) {
      yv[i] = to_float(y[at + w.lane + 32 * i]);
      s += yv[i] * n[i];
    }
    s = warp_sum(s);
#pragma unroll
    for (int i = 0; i < Hd / 32; ++i) z[at + w.lane + 32 * i] = __float2bfloat16_rn(yv[i] - s * n[i]);
  }
}

template <int Hd>
__global__ void xsa_backward_kernel(const bf16* __restrict__ dz, const bf16* __restrict__ y,
                                    const bf16* __restrict__ v, XsaDims d, float eps, bool accumulate,
                                    bf16* __restrict__ dy, float* __restrict__ dv) {
  XsaWarp<Hd> w;
  if (!w.locate(d)) return;
  float n[Hd / 32], dn[Hd / 32];
  const float norm = xsa_direction<Hd>(v + w.vrow, w.lane, eps, n);
#pragma unroll
  for (int i = 0; i < Hd / 32; ++i) dn[i] = 0.f;
  const int r = d.H / d.G;
  for (int j = 0; j < r; ++j) {
    const std::size_t at = w.tok * std::size_t(d.H) * Hd + std::size_t(w.g * r + j) * Hd;
    float yv[Hd / 32], gz[Hd / 32], sy = 0.f, sz = 0.f;
#pragma unroll
    for (int i = 0; i < Hd / 32; ++i) {
      yv[i] = to_float(y[at + w.lane + 32 * i]);
      gz[i] = to_float(dz[at + w.lane + 32 * i]);
      sy += yv[i] * n[i];
      sz += gz[i] * n[i];
    }
    sy = warp_sum(sy);
    sz = warp_sum(sz);
#pragma unroll
    for (int i = 0; i < Hd / 32; ++i) {
      dy[at + w.lane + 32 * i] = __float2bfloat16_rn(gz[i] - sz * n[i]);
      dn[i] -= sy * gz[i] + sz * yv[i];
    }
  }
  float p = 0.f;
#pragma unroll
  for (int i = 0; i < Hd / 32; ++i) p += dn[i] * n[i];
  p = warp_sum(p);
  const bool clamped = !(norm > eps);
  const float inv = 1.f / (clamped ? eps : norm);
  float* out = dv + w.vrow;
#pragma unroll
  for (int i = 0; i < Hd / 32; ++i) {
    const float g = (clamped ? dn[i] : dn[i] - p * n[i]) * inv;
    const int e = w.lane + 32 * i;
    out[e] = accumulate ? out[e] + g : g;
  }
}

}  // namespace detail

template <int Hd>
void xsa_forward(const bf16* y, const bf16* v, XsaDims d, float eps, bf16* z, cudaStream_t st = nullptr) {
  static_assert(Hd % 32 == 0, "xsa: the head dim must be a multiple of 32");
  detail::xsa_forward_kernel<Hd><<<row_blocks(d.warps()), 32 * kWarpsPerBlock, 0, st>>>(y, v, d, eps, z);
  PGOLF_CUDA_CHECK_LAUNCH("xsa_forward");
}

// dy = d z projected off n (written); dv = (I - n n^T) dn / ||v|| (written, or added when accumulate).
template <int Hd>
void xsa_backward(const bf16* dz, const bf16* y, const bf16* v, XsaDims d, float eps, bool accumulate, bf16* dy,
                  float* dv, cudaStream_t st = nullptr) {
  static_assert(Hd % 32 == 0, "xsa: the head dim must be a multiple of 32");
  detail::xsa_backward_kernel<Hd>
      <<<row_blocks(d.warps()), 32 * kWarpsPerBlock, 0, st>>>(dz, y, v, d, eps, accumulate, dy, dv);
  PGOLF_CUDA_CHECK_LAUNCH("xsa_backward");
}

}  // namespace pgolf::ops::cuda
