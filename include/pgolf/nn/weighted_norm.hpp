// WeightedNorm<Def>: n := w * RMSNorm(x), RMSNorm with a learned per-channel weight (PRISM's and its
// baselines'; w [dim] init 1, control tensor, scalar Adam). Def names the weight and its scope
// (a block's pre-norms, or the model's final norm).
#pragma once

#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"

namespace pgolf {

template <class Def>  // Def::name, Def::scope
struct WeightedNorm {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::n>;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}.add({.name = Def::name, .rows = A::dim, .cols = 1, .rank = 1, .init = {InitKind::ones},
                          .group = OptimGroup::adam_scalar, .control = true, .scope = Def::scope});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T, class Def>
struct Impl<Cpu<T>, WeightedNorm<Def>> {
  using C = WeightedNorm<Def>;
  template <class A>
  struct Resources {
    std::vector<T> scratch;  // the backward's w * d out
    explicit Resources(const Shape& sh) : scratch(sh.tokens() * A::dim) {}
  };
  struct Saved {
    T *y = nullptr, *rstd = nullptr, *out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.y, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens()), p.take(s.out, sh.tokens() * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_weighted_forward(value<Reg::x>(f), param<C>(c), c.tokens(), A::dim, T(A::eps), s.y, s.rstd, s.out);
    set_value<Reg::n>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_weighted_backward(dout<Reg::n>(io), param<C>(c), s.y, s.rstd, c.tokens(), A::dim, grad<C>(c),
                                        din<Reg::x>(io), adds<Reg::x, decltype(io)>,
                                        resources<Impl>(c).scratch.data());
  }
};

}  // namespace pgolf
