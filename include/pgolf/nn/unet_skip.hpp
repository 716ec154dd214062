// UNetSkip: the U-Net connection before decoder layer i, x := x + w_i * s_i, where s_i is the output
// of the mirrored encoder layer and w = skip_weights [skips, dim] (init 1, control tensor, scalar
// Adam). The model calls it between layers (the encoder/decoder split comes from the depth plan);
// the stream's gradient passes through, and d s_i is added into the encoder output's gradient.
//
// Gated (GptSpec.depth.skip_gates, the records' variant, TECHNIQUES.md 4.5): skip_gates gamma [skips,
// dim] (init 0, control, scalar Adam), g = sigmoid(gamma_i),
//   x := g x + (1 - g) w_i s_i   (= lerp(w s, x, g))
// and the stream's gradient is scaled in place: dx := g dout; d s_i += (1 - g) w_i dout;
// dw_i += sum((1 - g) s_i dout); dgamma_i += sum(g (1 - g) (x - w_i s_i) dout).
// An architecture without the field (PRISM's baselines) is ungated.
#pragma once

#include <cmath>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/channel_scale.hpp"
#include "pgolf/ops/cpu/skip_add.hpp"

namespace pgolf {

struct UNetSkip {
  template <class A>
  static constexpr bool gated() {
    if constexpr (requires { A::spec.depth.skip_gates; }) return A::spec.depth.skip_gates;
    else return false;
  }
  template <class A>
  static constexpr RowList rows() {
    RowList r;
    if (A::depth.max_skips() > 0) {
      r.add({.name = "skip_weights", .rows = A::depth.max_skips(), .cols = A::dim, .rank = 2, .init = {InitKind::ones},
             .group = OptimGroup::adam_scalar, .control = true, .scope = Scope::global});
      if (gated<A>())
        r.add({.name = "skip_gates", .rows = A::depth.max_skips(), .cols = A::dim, .rank = 2,
               .init = {InitKind::zeros}, .group = OptimGroup::adam_scalar, .control = true, .scope = Scope::global});
    }
    return r;
  }
};

template <class T>
struct Impl<Cpu<T>, UNetSkip> {
  struct Saved {
    const T *skip = nullptr, *x = nullptr;
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static T sigmoid(T z) { return T(1) / (T(1) + std::exp(-z)); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f, const T* skip, int i) {
    using A = arch_of<decltype(c)>;
    s.skip = skip;
    s.x = value<Reg::x>(f);
    const T* w = param<UNetSkip>(c) + std::size_t(i) * A::dim;
    if constexpr (UNetSkip::gated<A>()) {
      const T* gamma = param<UNetSkip, 1>(c) + std::size_t(i) * A::dim;
      for (std::size_t n = 0; n < c.tokens(); ++n)
        for (int j = 0; j < A::dim; ++j) {
          const std::size_t e = n * A::dim + j;
          const T g = sigmoid(gamma[j]);
          s.out[e] = g * s.x[e] + (T(1) - g) * w[j] * skip[e];
        }
    } else {
      ops::cpu::channel_scale_forward(s.x, w, skip, c.tokens(), A::dim, s.out);
    }
    set_value<Reg::x>(f, s.out);
  }
  // dx: the stream's gradient (passes ungated; scaled by g in place when gated); dskip += (1 - g) w_i dx.
  static void backward(auto& c, Saved& s, T* dx, T* dskip, int i) {
    using A = arch_of<decltype(c)>;
    const T* w = param<UNetSkip>(c) + std::size_t(i) * A::dim;
    T* dw = grad<UNetSkip>(c) + std::size_t(i) * A::dim;
    if constexpr (UNetSkip::gated<A>()) {
      const T* gamma = param<UNetSkip, 1>(c) + std::size_t(i) * A::dim;
      T* dgamma = grad<UNetSkip, 1>(c) + std::size_t(i) * A::dim;
      for (int j = 0; j < A::dim; ++j) {
        const T g = sigmoid(gamma[j]);
        T sw = 0, sg = 0;
        for (std::size_t n = 0; n < c.tokens(); ++n) {
          const std::size_t e = n * A::dim + j;
          const T d = dx[e], ws = w[j] * s.skip[e];
          dskip[e] += (T(1) - g) * w[j] * d;
          sw += (T(1) - g) * s.skip[e] * d;
          sg += g * (T(1) - g) * (s.x[e] - ws) * d;
          dx[e] = g * d;
        }
        dw[j] += sw;
        dgamma[j] += sg;
      }
    } else {
      ops::cpu::skip_add_backward(static_cast<const T*>(dx), w, s.skip, c.tokens(), A::dim, dskip, dw);
    }
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/channel.cuh"
#include "pgolf/ops/cuda/rmsnorm.cuh"
#include "pgolf/ops/cuda/skip_gate.cuh"

namespace pgolf {

template <>
struct Impl<Cuda, UNetSkip> {
  // Gated only: the two per-element factors whose column sums are dw and dgamma.
  template <class A>
  struct Resources {
    cuda::DeviceBuffer<float> a, b;
    explicit Resources(const Shape& sh)
        : a(UNetSkip::gated<A>() ? sh.tokens() * std::size_t(A::dim) : 0),
          b(UNetSkip::gated<A>() ? sh.tokens() * std::size_t(A::dim) : 0) {}
  };
  struct Saved {
    const float *skip = nullptr, *x = nullptr;
    float* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f, const float* skip, int i) {
    using A = arch_of<decltype(c)>;
    s.skip = skip;
    s.x = value<Reg::x>(f);
    if constexpr (UNetSkip::gated<A>())
      ops::cuda::gated_skip_forward<A::dim>(s.x, param<UNetSkip>(c) + std::size_t(i) * A::dim,
                                            param<UNetSkip, 1>(c) + std::size_t(i) * A::dim, skip, c.tokens(), s.out);
    else
      ops::cuda::scale_add_forward<A::dim>(s.x, param<UNetSkip>(c) + std::size_t(i) * A::dim, skip, c.tokens(), s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, float* dx, float* dskip, int i) {
    using A = arch_of<decltype(c)>;
    const float* w = param<UNetSkip>(c) + std::size_t(i) * A::dim;
    if constexpr (UNetSkip::gated<A>()) {
      auto& r = resources<Impl>(c);
      const float* gamma = param<UNetSkip, 1>(c) + std::size_t(i) * A::dim;
      // a = (1 - g) dout, b = g (1 - g) (x - w s) dout, dskip += w a, then dx := g dout.
      ops::cuda::gated_skip_backward<A::dim>(dx, s.x, w, gamma, s.skip, c.tokens(), dskip, r.a.data(), r.b.data());
      c.rt().colgrad.add(r.a.data(), s.skip, c.tokens(), A::dim, grad<UNetSkip>(c) + std::size_t(i) * A::dim);
      c.rt().colgrad.add(r.b.data(), static_cast<const float*>(nullptr), c.tokens(), A::dim,
                         grad<UNetSkip, 1>(c) + std::size_t(i) * A::dim);
      ops::cuda::gate_scale<A::dim>(gamma, c.tokens(), dx);
    } else {
      ops::cuda::scale_accumulate<A::dim>(dx, w, c.tokens(), dskip);
      c.rt().colgrad.add(static_cast<const float*>(dx), s.skip, c.tokens(), A::dim,
                         grad<UNetSkip>(c) + std::size_t(i) * A::dim);
    }
  }
};

}  // namespace pgolf
#endif
