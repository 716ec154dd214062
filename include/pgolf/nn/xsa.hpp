// Xsa: exclusive self attention (TECHNIQUES.md 4.10). On the physical blocks of
// GptSpec.attention.xsa the attention output loses, per token, its component along the token's own
// value vector: with n_g = v_g / max(||v_g||, 1e-12) (PyTorch's F.normalize) for KV head g,
//   z_h = y_h - (y_h . n_g) n_g   for every query head h of the group (h / (heads / kv_heads) == g).
// v is the value attention read (after any value embedding). No tensors. Elsewhere an exact identity:
// h passes unchanged and d v gets nothing from it.
//
// Backward, s_h = y_h . n, c_h = dz_h . n:
//   dy_h = dz_h - c_h n;   dn = -sum_h (s_h dz_h + c_h y_h);   dv_g = (I - n n^T) dn / ||v_g||
// (dv_g = dn / 1e-12 where the norm is clamped). Xsa is the last reader of v in the block, so it
// writes d v and CausalAttention adds its own gradient to it.
//
// Spec: GptSpec.attention.xsa (a BlockSet; empty: not in the program).
#pragma once

#include <cmath>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"

namespace pgolf {

struct Xsa {
  static constexpr Regs reads = regs<Reg::h, Reg::v>, writes = regs<Reg::h>;
  static constexpr double kEps = 1e-12;  // F.normalize's default
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
  // Whether it acts at physical block b.
  template <class A>
  static constexpr bool on(int b) { return A::spec.attention.xsa.contains(b, A::blocks); }
};

template <class T>
struct Impl<Cpu<T>, Xsa> {
  struct Saved {
    const T *y = nullptr, *v = nullptr;
    T* z = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.z, sh.tokens() * A::dim); }

  // The unit value direction of token t's KV head g into n; returns ||v_g||.
  template <class A>
  static T direction(const T* v, std::size_t t, int g, T* n) {
    const T* vg = v + t * A::kv_dim + std::size_t(g) * A::head_dim;
    T ss = 0;
    for (int e = 0; e < A::head_dim; ++e) ss += vg[e] * vg[e];
    const T norm = std::sqrt(ss), den = norm > T(Xsa::kEps) ? norm : T(Xsa::kEps);
    for (int e = 0; e < A::head_dim; ++e) n[e] = vg[e] / den;
    return norm;
  }

  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    if (!Xsa::on<A>(c.b)) return;  // identity: h stays the attention output
    constexpr int D = A::head_dim, group = A::heads / A::kv_heads;
    s.y = value<Reg::h>(f), s.v = value<Reg::v>(f);
    T n[D];
    for (std::size_t t = 0; t < c.tokens(); ++t)
      for (int g = 0; g < A::kv_heads; ++g) {
        direction<A>(s.v, t, g, n);
        for (int h = g * group; h < (g + 1) * group; ++h) {
          const T* y = s.y + t * A::dim + std::size_t(h) * D;
          T* z = s.z + t * A::dim + std::size_t(h) * D;
          T dot = 0;
          for (int e = 0; e < D; ++e) dot += y[e] * n[e];
          for (int e = 0; e < D; ++e) z[e] = y[e] - dot * n[e];
        }
      }
    set_value<Reg::h>(f, s.z);
  }

  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr bool add_v = adds<Reg::v, decltype(io)>;
    constexpr int D = A::head_dim, group = A::heads / A::kv_heads;
    const T* dz = dout<Reg::h>(io);
    T* dy = din<Reg::h>(io);
    T* dv = din<Reg::v>(io);
    const std::size_t N = c.tokens();
    if (!Xsa::on<A>(c.b)) {
      for (std::size_t e = 0; e < N * A::dim; ++e) dy[e] = dz[e];
      if constexpr (!add_v)
        for (std::size_t e = 0; e < N * A::kv_dim; ++e) dv[e] = 0;
      return;
    }
    T n[D], dn[D];
    for (std::size_t t = 0; t < N; ++t)
      for (int g = 0; g < A::kv_heads; ++g) {
        const T norm = direction<A>(s.v, t, g, n);
        for (int e = 0; e < D; ++e) dn[e] = 0;
        for (int h = g * group; h < (g + 1) * group; ++h) {
          const std::size_t at = t * A::dim + std::size_t(h) * D;
          const T* y = s.y + at;
          const T* gz = dz + at;
          T sy = 0, sz = 0;
          for (int e = 0; e < D; ++e) sy += y[e] * n[e], sz += gz[e] * n[e];
          for (int e = 0; e < D; ++e) {
            dy[at + e] = gz[e] - sz * n[e];
            dn[e] -= sy * gz[e] + sz * y[e];
          }
        }
        T* d = dv + t * A::kv_dim + std::size_t(g) * D;
        if (norm > T(Xsa::kEps)) {
          T p = 0;
          for (int e = 0; e < D; ++e) p += dn[e] * n[e];
          for (int e = 0; e < D; ++e) {
            const T r = (dn[e] - p * n[e]) / norm;
            d[e] = add_v ? d[e] + r : r;
          }
        } else {  // the clamped norm is a constant: n = v / eps
          for (int e = 0; e < D; ++e) {
            const T r = dn[e] / T(Xsa::kEps);
            d[e] = add_v ? d[e] + r : r;
          }
        }
      }
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/xsa.cuh"

namespace pgolf {

// One warp per (token, KV head), fp32 math (ops/cuda/xsa.cuh). h is bf16 token-major, v bf16
// head-major [batch, kv_heads, seq, head_dim], d v fp32 in v's layout, d h bf16.
template <>
struct Impl<Cuda, Xsa> {
  using bf16 = Cuda::bf16;
  struct Saved {
    const bf16 *y = nullptr, *v = nullptr;
    bf16* z = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.z, sh.tokens() * A::dim); }
  template <class A>
  static ops::cuda::XsaDims dims(const auto& c) {
    return {c.batch(), c.seq(), A::heads, A::kv_heads};
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    if (!Xsa::on<A>(c.b)) return;
    s.y = value<Reg::h>(f), s.v = value<Reg::v>(f);
    ops::cuda::xsa_forward<A::head_dim>(s.y, s.v, dims<A>(c), float(Xsa::kEps), s.z);
    set_value<Reg::h>(f, s.z);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr bool add_v = adds<Reg::v, decltype(io)>;
    const std::size_t N = c.tokens();
    if (!Xsa::on<A>(c.b)) {
      PGOLF_CUDA_CHECK(cudaMemcpyAsync(din<Reg::h>(io), dout<Reg::h>(io), N * A::dim * sizeof(bf16),
                                       cudaMemcpyDeviceToDevice));
      if constexpr (!add_v) PGOLF_CUDA_CHECK(cudaMemsetAsync(din<Reg::v>(io), 0, N * A::kv_dim * sizeof(float)));
      return;
    }
    ops::cuda::xsa_backward<A::head_dim>(dout<Reg::h>(io), s.y, s.v, dims<A>(c), float(Xsa::kEps), add_v,
                                         din<Reg::h>(io), din<Reg::v>(io));
  }
};

}  // namespace pgolf
#endif
