// ScaledResidual<Def>: x := x + s * h, the residual add of a branch with a learned per-channel
// scale (attn_scale, mlp_scale: init 1, control tensors, scalar Adam). The stream's gradient passes
// through unchanged.
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/channel_scale.hpp"

namespace pgolf {

template <class Def>  // Def::name: the scale's tensor name
struct ScaledResidual {
  static constexpr Regs reads = regs<Reg::x, Reg::h>, writes = regs<Reg::x>, passes = regs<Reg::x>;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}.add({.name = Def::name, .rows = A::dim, .cols = 1, .rank = 1, .init = {InitKind::ones},
                          .group = OptimGroup::adam_scalar, .control = true, .scope = A::scalar_scope});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

struct AttnScale {
  static constexpr const char* name = "attn_scale";
};
struct MlpScale {
  static constexpr const char* name = "mlp_scale";
};

template <class T, class Def>
struct Impl<Cpu<T>, ScaledResidual<Def>> {
  using C = ScaledResidual<Def>;
  struct Saved {
    const T* h = nullptr;
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.h = value<Reg::h>(f);
    ops::cpu::channel_scale_forward(value<Reg::x>(f), param<C>(c), s.h, c.tokens(), A::dim, s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::h, decltype(io)>, "ScaledResidual writes d h: nothing else may read the branch");
    ops::cpu::channel_scale_backward(dout<Reg::x>(io), param<C>(c), s.h, c.tokens(), A::dim, din<Reg::h>(io),
                                     grad<C>(c));
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/channel.cuh"
#include "pgolf/ops/cuda/rmsnorm.cuh"

namespace pgolf {

// Where a norm follows, Fused<Cuda, ScaledResidual, PreNorm> (rms_norm.hpp) runs both.
template <class Def>
struct Impl<Cuda, ScaledResidual<Def>> {
  using C = ScaledResidual<Def>;
  struct Saved {
    const Cuda::bf16* h = nullptr;
    float* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.h = value<Reg::h>(f);
    ops::cuda::scale_add_forward<A::dim>(value<Reg::x>(f), param<C>(c), s.h, c.tokens(), s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::h, decltype(io)>, "ScaledResidual writes d h: nothing else may read the branch");
    const float* g = dout<Reg::x>(io);
    c.rt().colgrad.add(g, s.h, c.tokens(), A::dim, grad<C>(c));
    ops::cuda::scale_grad<A::dim>(g, param<C>(c), c.tokens(), din<Reg::h>(io));
  }
};

}  // namespace pgolf
#endif
