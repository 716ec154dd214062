// Activation<Kind>: h := f(h) elementwise on the MLP's hidden branch (relu^2, LeakyReLU(0.5)^2).
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/activation_kind.hpp"
#include "pgolf/ops/cpu/activation.hpp"

namespace pgolf {

template <Activation Kind>
struct ActivationOf {
  static constexpr Regs reads = regs<Reg::h>, writes = regs<Reg::h>;
  template <class A>
  static constexpr int width(Reg) { return A::hidden; }
};

template <class T, Activation Kind>
struct Impl<Cpu<T>, ActivationOf<Kind>> {
  struct Saved {
    const T* u = nullptr;
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::hidden); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.u = value<Reg::h>(f);
    ops::cpu::activation_forward<Kind>(s.u, c.tokens() * A::hidden, s.out);
    set_value<Reg::h>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::activation_backward<Kind>(dout<Reg::h>(io), s.u, c.tokens() * A::hidden, din<Reg::h>(io));
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/activation.cuh"

namespace pgolf {

template <Activation Kind>
struct Impl<Cuda, ActivationOf<Kind>> {
  struct Saved {
    const Cuda::bf16* u = nullptr;
    Cuda::bf16* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::hidden); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.u = value<Reg::h>(f);
    ops::cuda::activation_forward<Kind>(s.u, c.tokens() * A::hidden, s.out);
    set_value<Reg::h>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cuda::activation_backward<Kind>(dout<Reg::h>(io), s.u, c.tokens() * A::hidden, din<Reg::h>(io));
  }
};

}  // namespace pgolf
#endif
