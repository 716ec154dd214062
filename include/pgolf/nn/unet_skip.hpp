// UNetSkip: the U-Net connection before decoder layer i, x := x + w_i * s_i, where s_i is the output
// of the mirrored encoder layer and w = skip_weights [skips, dim] (init 1, control tensor, scalar
// Adam). The model calls it between layers (the encoder/decoder split comes from the depth plan);
// the stream's gradient passes through, and d s_i is added into the encoder output's gradient.
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/channel_scale.hpp"
#include "pgolf/ops/cpu/skip_add.hpp"

namespace pgolf {

struct UNetSkip {
  template <class A>
  static constexpr RowList rows() {
    RowList r;
    if (A::depth.max_skips() > 0)
      r.add({.name = "skip_weights", .rows = A::depth.max_skips(), .cols = A::dim, .rank = 2, .init = {InitKind::ones},
             .group = OptimGroup::adam_scalar, .control = true, .scope = Scope::global});
    return r;
  }
};

template <class T>
struct Impl<Cpu<T>, UNetSkip> {
  struct Saved {
    const T* skip = nullptr;
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f, const T* skip, int i) {
    using A = arch_of<decltype(c)>;
    s.skip = skip;
    ops::cpu::channel_scale_forward(value<Reg::x>(f), param<UNetSkip>(c) + std::size_t(i) * A::dim, skip, c.tokens(),
                                    A::dim, s.out);
    set_value<Reg::x>(f, s.out);
  }
  // dx: the stream's gradient (passes); dskip += w_i * dx.
  static void backward(auto& c, Saved& s, const T* dx, T* dskip, int i) {
    using A = arch_of<decltype(c)>;
    ops::cpu::skip_add_backward(dx, param<UNetSkip>(c) + std::size_t(i) * A::dim, s.skip, c.tokens(), A::dim, dskip,
                                grad<UNetSkip>(c) + std::size_t(i) * A::dim);
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/channel.cuh"
#include "pgolf/ops/cuda/rmsnorm.cuh"

namespace pgolf {

template <>
struct Impl<Cuda, UNetSkip> {
  struct Saved {
    const float* skip = nullptr;
    float* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f, const float* skip, int i) {
    using A = arch_of<decltype(c)>;
    s.skip = skip;
    ops::cuda::scale_add_forward<A::dim>(value<Reg::x>(f), param<UNetSkip>(c) + std::size_t(i) * A::dim, skip,
                                         c.tokens(), s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, const float* dx, float* dskip, int i) {
    using A = arch_of<decltype(c)>;
    ops::cuda::scale_accumulate<A::dim>(dx, param<UNetSkip>(c) + std::size_t(i) * A::dim, c.tokens(), dskip);
    c.rt().colgrad.add(dx, s.skip, c.tokens(), A::dim, grad<UNetSkip>(c) + std::size_t(i) * A::dim);
  }
};

}  // namespace pgolf
#endif
