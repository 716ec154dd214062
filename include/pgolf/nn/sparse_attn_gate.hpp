// SparseAttnGate: the strongest records' per-head output gate on attention (TECHNIQUES.md 13.2,
// notes/records_stack.md section 2). For token t and query head h, with c = gate_channels:
//   g = sigmoid(gate_scale * sum_{j<c} W[h, j] n[t, j]),   y_h := g y_h,
// n the attention's input (the normed block input times any LN scale, still in register n after the
// QKV product), y the attention output after XSA. W = attn_gate_w [heads, c], zero init (g = 1/2),
// scalar Adam, exported as a plain (not control) tensor, owned per block (per virtual layer under
// Sharing::matrices).
//
// Backward, dl = g (1 - g) sum_d dz_d y_d:
//   dy = g dz;   dW[h, j] += gate_scale sum_t dl n[t, j];   dn[t, j] = gate_scale sum_h dl W[h, j] (j < c, else 0).
// It is the last reader of n in the attention half, so it writes d n (the whole row) and the QKV
// product adds its own.
//
// Spec: GptSpec.attention.gate_channels (0: not in the program), gate_scale.
#pragma once

#include <cmath>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"

namespace pgolf {

struct SparseAttnGate {
  static constexpr Regs reads = regs<Reg::n, Reg::h>, writes = regs<Reg::h>;
  template <class A>
  static constexpr RowList rows() {
    constexpr int c = A::spec.attention.gate_channels;
    const Init zero{InitKind::zeros, 0.0};
    RowList r;
    r.add({.name = "attn.attn_gate_w", .rows = A::heads, .cols = c, .rank = 2, .init = zero,
           .group = OptimGroup::adam_scalar, .control = false, .scope = A::scalar_scope});
    return r;
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
  template <class A>
  static constexpr int channels = A::spec.attention.gate_channels;
  template <class A>
  static constexpr double scale = A::spec.attention.gate_scale;
};

template <class T>
struct Impl<Cpu<T>, SparseAttnGate> {
  using C = SparseAttnGate;
  struct Saved {
    const T *n = nullptr, *y = nullptr;
    T *z = nullptr, *g = nullptr;  // g [tokens, heads]
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.z, sh.tokens() * A::dim), p.take(s.g, sh.tokens() * A::heads);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    constexpr int K = C::channels<A>, D = A::head_dim;
    const T k = T(C::scale<A>);
    const T* W = param<C>(c);
    s.n = value<Reg::n>(f), s.y = value<Reg::h>(f);
    for (std::size_t t = 0; t < c.tokens(); ++t)
      for (int h = 0; h < A::heads; ++h) {
        T a = 0;
        for (int j = 0; j < K; ++j) a += W[h * K + j] * s.n[t * A::dim + std::size_t(j)];
        const T g = T(1) / (T(1) + std::exp(-k * a));
        s.g[t * A::heads + std::size_t(h)] = g;
        const std::size_t at = t * A::dim + std::size_t(h) * D;
        for (int e = 0; e < D; ++e) s.z[at + e] = g * s.y[at + e];
      }
    set_value<Reg::h>(f, s.z);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int K = C::channels<A>, D = A::head_dim;
    constexpr bool add_n = adds<Reg::n, decltype(io)>;
    const T k = T(C::scale<A>);
    const T* W = param<C>(c);
    T* dW = grad<C>(c);
    const T* dz = dout<Reg::h>(io);
    T* dy = din<Reg::h>(io);
    T* dn = din<Reg::n>(io);
    for (std::size_t t = 0; t < c.tokens(); ++t) {
      T* dnt = dn + t * A::dim;
      if constexpr (!add_n)
        for (int j = 0; j < A::dim; ++j) dnt[j] = 0;
      for (int h = 0; h < A::heads; ++h) {
        const T g = s.g[t * A::heads + std::size_t(h)];
        const std::size_t at = t * A::dim + std::size_t(h) * D;
        T dot = 0;
        for (int e = 0; e < D; ++e) dot += dz[at + e] * s.y[at + e], dy[at + e] = g * dz[at + e];
        const T dl = k * g * (T(1) - g) * dot;  // d(the pre-scale logit)
        for (int j = 0; j < K; ++j) {
          dW[h * K + j] += dl * s.n[t * A::dim + std::size_t(j)];
          dnt[j] += dl * W[h * K + j];
        }
      }
    }
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/sparse_attn_gate.cuh"

namespace pgolf {

// ops/cuda/sparse_attn_gate.cuh: a warp per (token, head) each way; the weight gradient by a fixed-order
// block reduction per element of W (deterministic).
template <>
struct Impl<Cuda, SparseAttnGate> {
  using C = SparseAttnGate;
  using bf16 = Cuda::bf16;
  template <class A>
  struct Resources {
    cuda::DeviceBuffer<float> dlogit;  // [tokens, heads], the backward's scratch
    explicit Resources(const Shape& sh) : dlogit(sh.tokens() * std::size_t(A::heads)) {}
  };
  struct Saved {
    const bf16 *n = nullptr, *y = nullptr;
    bf16* z = nullptr;
    float* g = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.z, sh.tokens() * A::dim), p.take(s.g, sh.tokens() * A::heads);
  }
  template <class A>
  static ops::cuda::GateDims dims(const auto& c) {
    return {c.tokens(), A::dim, A::heads, A::head_dim, C::channels<A>, float(C::scale<A>)};
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.n = value<Reg::n>(f), s.y = value<Reg::h>(f);
    ops::cuda::sparse_attn_gate_forward(s.n, s.y, param<C>(c), dims<A>(c), s.g, s.z);
    set_value<Reg::h>(f, s.z);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cuda::sparse_attn_gate_backward(dout<Reg::h>(io), s.n, s.y, param<C>(c), s.g, dims<A>(c),
                                         adds<Reg::n, decltype(io)>, resources<Impl>(c).dlogit.data(),
                                         din<Reg::h>(io), din<Reg::n>(io), grad<C>(c));
  }
};

}  // namespace pgolf
#endif
