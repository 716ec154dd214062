// Weightless RMSNorm components (eps from the architecture):
//   PreNorm     n := norm(x)     the branch input of attention, the MLP and the head
//   StreamNorm  x := norm(x)     the embedding's norm (its output is the stream and the anchor)
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"

namespace pgolf {

struct PreNorm {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::n>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

struct StreamNorm {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::x>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T>
struct Impl<Cpu<T>, PreNorm> {
  struct Saved {
    T *n = nullptr, *rstd = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.n, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_forward(value<Reg::x>(f), c.tokens(), A::dim, T(A::eps), s.n, s.rstd);
    set_value<Reg::n>(f, s.n);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_backward(dout<Reg::n>(io), s.n, s.rstd, c.tokens(), A::dim, din<Reg::x>(io),
                               adds<Reg::x, decltype(io)>);
  }
};

template <class T>
struct Impl<Cpu<T>, StreamNorm> {
  using Saved = typename Impl<Cpu<T>, PreNorm>::Saved;
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    Impl<Cpu<T>, PreNorm>::template plan<A>(p, s, sh);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_forward(value<Reg::x>(f), c.tokens(), A::dim, T(A::eps), s.n, s.rstd);
    set_value<Reg::x>(f, s.n);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_backward(dout<Reg::x>(io), s.n, s.rstd, c.tokens(), A::dim, din<Reg::x>(io), false);
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/nn/resid_mix.hpp"
#include "pgolf/nn/scaled_residual.hpp"
#include "pgolf/ops/cuda/rmsnorm.cuh"

namespace pgolf {

// One warp per row; the backward recomputes the normalised row from the input and rstd.
template <>
struct Impl<Cuda, PreNorm> {
  struct Saved {
    const float* x = nullptr;
    Cuda::bf16* n = nullptr;
    float* rstd = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.n, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f);
    ops::cuda::rmsnorm_forward<A::dim>(s.x, c.tokens(), float(A::eps), s.n, s.rstd);
    set_value<Reg::n>(f, s.n);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    float* dx = din<Reg::x>(io);
    ops::cuda::rmsnorm_backward<A::dim>(dout<Reg::n>(io), s.x, s.rstd, c.tokens(),
                                        adds<Reg::x, decltype(io)> ? dx : nullptr, dx);
  }
};

template <>
struct Impl<Cuda, StreamNorm> {
  struct Saved {
    const float* x = nullptr;
    float *out = nullptr, *rstd = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.out, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f);
    ops::cuda::rmsnorm_forward<A::dim>(s.x, c.tokens(), float(A::eps), s.out, s.rstd);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cuda::rmsnorm_backward<A::dim>(dout<Reg::x>(io), s.x, s.rstd, c.tokens(), nullptr, din<Reg::x>(io));
  }
};

// x := m0 x + m1 x0 and n := norm(x) in one pass over the row (mix_norm). The backwards are the two
// components' own.
template <>
struct Fused<Cuda, ResidMix, PreNorm> {
  static constexpr bool available = true;
  static constexpr bool fused_backward = false;
  using State = std::tuple<Impl<Cuda, ResidMix>::Saved, Impl<Cuda, PreNorm>::Saved>;
  static void forward(auto& c, State& st, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    auto& [mix, norm] = st;
    mix.x = value<Reg::x>(f), mix.x0 = value<Reg::x0>(f);
    ops::cuda::mix_norm_forward<A::dim>(mix.x, mix.x0, param<ResidMix>(c), c.tokens(), float(A::eps), mix.out, norm.n,
                                        norm.rstd);
    norm.x = mix.out;
    set_value<Reg::x>(f, mix.out), set_value<Reg::n>(f, norm.n);
  }
};

// x := x + s h and n := norm(x) in one pass (scale_add_norm).
template <class Def>
struct Fused<Cuda, ScaledResidual<Def>, PreNorm> {
  static constexpr bool available = true;
  static constexpr bool fused_backward = false;
  using State = std::tuple<typename Impl<Cuda, ScaledResidual<Def>>::Saved, Impl<Cuda, PreNorm>::Saved>;
  static void forward(auto& c, State& st, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    auto& [res, norm] = st;
    res.h = value<Reg::h>(f);
    ops::cuda::scale_add_norm_forward<A::dim>(value<Reg::x>(f), param<ScaledResidual<Def>>(c), res.h, c.tokens(),
                                              float(A::eps), res.out, norm.n, norm.rstd);
    norm.x = res.out;
    set_value<Reg::x>(f, res.out), set_value<Reg::n>(f, norm.n);
  }
};

}  // namespace pgolf
#endif
