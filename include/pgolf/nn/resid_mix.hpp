// ResidMix: x := m0 * x + m1 * x0, mixing the embedding anchor back into the stream at the start of
// a block (m = resid_mix [2, dim], init rows 1 and 0; control tensor, scalar Adam).
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/resid_mix.hpp"

namespace pgolf {

struct ResidMix {
  static constexpr Regs reads = regs<Reg::x, Reg::x0>, writes = regs<Reg::x>;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}.add({.name = "resid_mix", .rows = 2, .cols = A::dim, .rank = 2, .init = {InitKind::mix_identity},
                          .group = OptimGroup::adam_scalar, .control = true, .scope = A::scalar_scope});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T>
struct Impl<Cpu<T>, ResidMix> {
  struct Saved {
    const T *x = nullptr, *x0 = nullptr;
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }

  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f), s.x0 = value<Reg::x0>(f);
    ops::cpu::resid_mix_forward(s.x, s.x0, param<ResidMix>(c), c.tokens(), A::dim, s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(adds<Reg::x0, decltype(io)>, "ResidMix adds into d x0: x0 must be an anchor");
    ops::cpu::resid_mix_backward(dout<Reg::x>(io), s.x, s.x0, param<ResidMix>(c), c.tokens(), A::dim,
                                 din<Reg::x>(io), din<Reg::x0>(io), grad<ResidMix>(c));
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/channel.cuh"

namespace pgolf {

// Where a norm follows (the baseline block), Fused<Cuda, ResidMix, PreNorm> (rms_norm.hpp) runs both.
template <>
struct Impl<Cuda, ResidMix> {
  struct Saved {
    const float *x = nullptr, *x0 = nullptr;
    float* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    static_assert(A::dim % 32 == 0, "GptSpec.dim must be a multiple of 32 for the CUDA kernels");
    s.x = value<Reg::x>(f), s.x0 = value<Reg::x0>(f);
    ops::cuda::resid_mix_forward<A::dim>(s.x, s.x0, param<ResidMix>(c), c.tokens(), s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(adds<Reg::x0, decltype(io)>, "ResidMix adds into d x0: x0 must be an anchor");
    const float* g = dout<Reg::x>(io);
    float* dmix = grad<ResidMix>(c);
    c.rt().colgrad.add(g, s.x, c.tokens(), A::dim, dmix);
    c.rt().colgrad.add(g, s.x0, c.tokens(), A::dim, dmix + A::dim);
    ops::cuda::resid_mix_backward<A::dim>(g, param<ResidMix>(c), c.tokens(), din<Reg::x>(io), din<Reg::x0>(io));
  }
};

}  // namespace pgolf
#endif
