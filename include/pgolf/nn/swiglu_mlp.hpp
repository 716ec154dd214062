// SwiGluMlp<Def>: h := W_down (silu(n W_gate^T) * (n W_up^T)) (the PRISM harness's feed-forward;
// W_gate, W_up [hidden, dim], W_down [dim, hidden], Muon; Def gives the names and the init).
#pragma once

#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/swiglu.hpp"

namespace pgolf {

template <class Def>  // Def::gate, Def::up, Def::down (names), Def::init<A>
struct SwiGluMlp {
  static constexpr Regs reads = regs<Reg::n>, writes = regs<Reg::h>;
  template <class A>
  static constexpr RowList rows() {
    const Init init = Def::template init<A>;
    const auto M = OptimGroup::muon_matrix;
    return RowList{}
        .add({.name = Def::gate, .rows = A::hidden, .cols = A::dim, .rank = 2, .init = init, .group = M})
        .add({.name = Def::up, .rows = A::hidden, .cols = A::dim, .rank = 2, .init = init, .group = M})
        .add({.name = Def::down, .rows = A::dim, .cols = A::hidden, .rank = 2, .init = init, .group = M});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T, class Def>
struct Impl<Cpu<T>, SwiGluMlp<Def>> {
  using C = SwiGluMlp<Def>;
  template <class A>
  struct Resources {
    std::vector<T> da, db;
    explicit Resources(const Shape& sh) : da(sh.tokens() * A::hidden), db(sh.tokens() * A::hidden) {}
  };
  struct Saved {
    const T* n = nullptr;
    T *a = nullptr, *b = nullptr, *s = nullptr, *out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    const std::size_t NH = sh.tokens() * A::hidden;
    p.take(s.a, NH), p.take(s.b, NH), p.take(s.s, NH), p.take(s.out, sh.tokens() * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const int n = int(c.tokens());
    s.n = value<Reg::n>(f);
    ops::cpu::linear_forward(s.n, param<C, 0>(c), s.a, n, A::dim, A::hidden);
    ops::cpu::linear_forward(s.n, param<C, 1>(c), s.b, n, A::dim, A::hidden);
    ops::cpu::swiglu_forward(s.a, s.b, c.tokens() * A::hidden, s.s);
    ops::cpu::linear_forward(s.s, param<C, 2>(c), s.out, n, A::hidden, A::dim);
    set_value<Reg::h>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    const int n = int(c.tokens());
    auto& r = resources<Impl>(c);
    T* dn = din<Reg::n>(io);
    ops::cpu::linear_backward(dout<Reg::h>(io), s.s, param<C, 2>(c), r.da.data(), grad<C, 2>(c), n, A::hidden, A::dim,
                              false);
    ops::cpu::swiglu_backward(r.da.data(), s.a, s.b, c.tokens() * A::hidden, r.da.data(), r.db.data());
    ops::cpu::linear_backward(r.da.data(), s.n, param<C, 0>(c), dn, grad<C, 0>(c), n, A::dim, A::hidden,
                              adds<Reg::n, decltype(io)>);
    ops::cpu::linear_backward(r.db.data(), s.n, param<C, 1>(c), dn, grad<C, 1>(c), n, A::dim, A::hidden, true);
  }
};

}  // namespace pgolf
