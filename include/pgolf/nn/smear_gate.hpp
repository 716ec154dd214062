// SmearGate: each position takes in some of the previous position's embedding, within its sequence
// row. Two forms (GptSpec.embedding.smear; smear_channels picks the form):
//
// SmearGate (smear_channels = 0; the Frugendorff's, on the normed embedding, after StreamNorm):
//   x_t := (1 - g_t) x_t + g_t x_{t-1},  g_t = sigmoid(gate) per channel, x_{-1} = 0 at a row's start;
//   gate = smear.gate [dim], init 0 (g = 0.5), scalar Adam, control.
//   Backward: dx_t = (1 - g_t) dy_t + g_{t+1} dy_{t+1} (nothing from past the row's end);
//   dgate = sum over positions of g (1 - g) (x_{t-1} - x_t) dy_t.
//
// SmearGateLinear (smear_channels = c > 0; the strongest records', on the raw embedding, before
// StreamNorm):
//   e_t := e_t + g_t e_{t-1} for t >= 1 (t = 0 untouched),  g_t = lambda sigmoid(w . e_t[:c]);
//   w = smear_gate.weight [1, c] and lambda = smear_lambda [1], both init 0 (transparent at init),
//   scalar Adam, control. Backward, with s_t = sigmoid(z_t), z_t = w . e_t[:c], q_t = dy_t . e_{t-1}:
//   de_t = dy_t + g_{t+1} dy_{t+1} + [j < c] lambda s_t (1 - s_t) q_t w_j;
//   dlambda = sum_t s_t q_t;  dw_j = sum_t lambda s_t (1 - s_t) q_t e_t[j].
//
// BOS fix (smear_bos_fix, on by default): g_t = 0 at every position whose token is bos_id, so the
// last token of one document does not leak into the next document's BOS in a packed row.
//
// Spec: GptSpec.embedding.smear, smear_channels, smear_bos_fix, bos_id.
#pragma once

#include <cmath>
#include <cstdint>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/core/config.hpp"
#include "pgolf/nn/component.hpp"

namespace pgolf {

// Whether the gate is forced to 0 at flat position n.
template <class A>
PGOLF_HD constexpr bool smear_blocked(const std::int32_t* ids, std::size_t n) {
  return A::spec.embedding.smear_bos_fix && ids[n] == A::spec.embedding.bos_id;
}

struct SmearGate {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::x>;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}.add({.name = "smear.gate", .rows = A::dim, .cols = 1, .rank = 1, .init = {InitKind::zeros},
                          .group = OptimGroup::adam_scalar, .control = true, .scope = Scope::global});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

struct SmearGateLinear {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::x>;
  template <class A>
  static constexpr int channels = A::spec.embedding.smear_channels;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}
        .add({.name = "smear_gate.weight", .rows = 1, .cols = channels<A>, .rank = 2, .init = {InitKind::zeros},
              .group = OptimGroup::adam_scalar, .control = true, .scope = Scope::global})
        .add({.name = "smear_lambda", .rows = 1, .cols = 1, .rank = 1, .init = {InitKind::zeros},
              .group = OptimGroup::adam_scalar, .control = true, .scope = Scope::global});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T>
struct Impl<Cpu<T>, SmearGate> {
  struct Saved {
    const T* x = nullptr;
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    constexpr int D = A::dim;
    const T* gate = param<SmearGate>(c);
    const std::int32_t* ids = c.ids();
    s.x = value<Reg::x>(f);
    for (std::size_t n = 0; n < c.tokens(); ++n) {
      const bool first = n % std::size_t(c.seq()) == 0, blocked = smear_blocked<A>(ids, n);
      for (int j = 0; j < D; ++j) {
        const T x = s.x[n * D + j], prev = first ? T(0) : s.x[(n - 1) * D + j];
        const T g = blocked ? T(0) : T(1) / (T(1) + std::exp(-gate[j]));
        s.out[n * D + j] = (T(1) - g) * x + g * prev;
      }
    }
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int D = A::dim;
    const T* gate = param<SmearGate>(c);
    T* dgate = grad<SmearGate>(c);
    const std::int32_t* ids = c.ids();
    const T* dy = dout<Reg::x>(io);
    T* dx = din<Reg::x>(io);
    const std::size_t N = c.tokens(), seq = std::size_t(c.seq());
    for (int j = 0; j < D; ++j) {
      const T g = T(1) / (T(1) + std::exp(-gate[j]));
      T acc = 0;
      for (std::size_t n = 0; n < N; ++n) {
        const bool first = n % seq == 0, last = (n + 1) % seq == 0;
        const T gt = smear_blocked<A>(ids, n) ? T(0) : g;
        const T gn = last || smear_blocked<A>(ids, n + 1) ? T(0) : g;
        const T x = s.x[n * D + j], prev = first ? T(0) : s.x[(n - 1) * D + j];
        dx[n * D + j] = (T(1) - gt) * dy[n * D + j] + (last ? T(0) : gn * dy[(n + 1) * D + j]);
        if (!smear_blocked<A>(ids, n)) acc += (prev - x) * dy[n * D + j];
      }
      dgate[j] += g * (T(1) - g) * acc;
    }
  }
};

template <class T>
struct Impl<Cpu<T>, SmearGateLinear> {
  using C = SmearGateLinear;
  struct Saved {
    const T* x = nullptr;
    T *out = nullptr, *s = nullptr, *g = nullptr;  // sigmoid(z_t), g_t per token
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.out, sh.tokens() * A::dim), p.take(s.s, sh.tokens()), p.take(s.g, sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    constexpr int D = A::dim, K = C::channels<A>;
    const T* w = param<C, 0>(c);
    const T lambda = param<C, 1>(c)[0];
    const std::int32_t* ids = c.ids();
    s.x = value<Reg::x>(f);
    for (std::size_t n = 0; n < c.tokens(); ++n) {
      const T* e = s.x + n * D;
      T z = 0;
      for (int j = 0; j < K; ++j) z += w[j] * e[j];
      s.s[n] = T(1) / (T(1) + std::exp(-z));
      const bool off = n % std::size_t(c.seq()) == 0 || smear_blocked<A>(ids, n);
      s.g[n] = off ? T(0) : lambda * s.s[n];
      for (int j = 0; j < D; ++j) s.out[n * D + j] = off ? e[j] : e[j] + s.g[n] * e[j - D];
    }
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int D = A::dim, K = C::channels<A>;
    const T* w = param<C, 0>(c);
    const T lambda = param<C, 1>(c)[0];
    T *dw = grad<C, 0>(c), *dlambda = grad<C, 1>(c);
    const std::int32_t* ids = c.ids();
    const T* dy = dout<Reg::x>(io);
    T* dx = din<Reg::x>(io);
    const std::size_t N = c.tokens(), seq = std::size_t(c.seq());
    T dl = 0;
    for (std::size_t n = 0; n < N; ++n) {
      const bool last = (n + 1) % seq == 0;
      const T gn = last ? T(0) : s.g[n + 1];
      for (int j = 0; j < D; ++j) dx[n * D + j] = dy[n * D + j] + (last ? T(0) : gn * dy[(n + 1) * D + j]);
      const bool off = n % seq == 0 || smear_blocked<A>(ids, n);
      if (off) continue;
      T q = 0;
      for (int j = 0; j < D; ++j) q += dy[n * D + j] * s.x[(n - 1) * D + j];
      dl += s.s[n] * q;
      const T dz = lambda * s.s[n] * (T(1) - s.s[n]) * q;
      for (int j = 0; j < K; ++j) dw[j] += dz * s.x[n * D + j], dx[n * D + j] += dz * w[j];
    }
    dlambda[0] += dl;
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/smear_gate.cuh"

namespace pgolf {

// One elementwise kernel each way; dgate by ColumnGrad over the per-element factors the backward
// kernel writes.
template <>
struct Impl<Cuda, SmearGate> {
  struct Saved {
    const float* x = nullptr;
    float *out = nullptr, *fac = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.out, sh.tokens() * A::dim), p.take(s.fac, sh.tokens() * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f);
    ops::cuda::smear_forward<A::dim>(s.x, param<SmearGate>(c), c.ids(), c.tokens(), c.seq(),
                                     A::spec.embedding.smear_bos_fix ? A::spec.embedding.bos_id : -1, s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    const float* dy = dout<Reg::x>(io);
    ops::cuda::smear_backward<A::dim>(dy, s.x, param<SmearGate>(c), c.ids(), c.tokens(), c.seq(),
                                      A::spec.embedding.smear_bos_fix ? A::spec.embedding.bos_id : -1,
                                      din<Reg::x>(io), s.fac);
    c.rt().colgrad.add(dy, static_cast<const float*>(s.fac), c.tokens(), A::dim, grad<SmearGate>(c));
  }
};

// One warp per row each way; dw and dlambda by ColumnGrad over the per-token terms the backward
// kernel writes.
template <>
struct Impl<Cuda, SmearGateLinear> {
  using C = SmearGateLinear;
  struct Saved {
    const float* x = nullptr;
    float *out = nullptr, *s = nullptr, *g = nullptr, *tw = nullptr, *tl = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    const std::size_t N = sh.tokens();
    p.take(s.out, N * A::dim), p.take(s.s, N), p.take(s.g, N), p.take(s.tw, N * C::channels<A>), p.take(s.tl, N);
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f);
    ops::cuda::smear_linear_forward<A::dim, C::channels<A>>(
        s.x, param<C, 0>(c), param<C, 1>(c), c.ids(), c.tokens(), c.seq(),
        A::spec.embedding.smear_bos_fix ? A::spec.embedding.bos_id : -1, s.out, s.s, s.g);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int K = C::channels<A>;
    ops::cuda::smear_linear_backward<A::dim, K>(dout<Reg::x>(io), s.x, param<C, 0>(c), param<C, 1>(c), s.s, s.g,
                                               c.ids(), c.tokens(), c.seq(),
                                               A::spec.embedding.smear_bos_fix ? A::spec.embedding.bos_id : -1,
                                               din<Reg::x>(io), s.tw, s.tl);
    c.rt().colgrad.add(s.tw, static_cast<const float*>(nullptr), c.tokens(), K, grad<C, 0>(c));
    c.rt().colgrad.add(s.tl, static_cast<const float*>(nullptr), c.tokens(), 1, grad<C, 1>(c));
  }
};

}  // namespace pgolf
#endif
