// Residual: x := x + h, the plain residual add (no scale). The stream's gradient passes; the
// branch receives a copy of it.
#pragma once

#include <algorithm>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"

namespace pgolf {

struct Residual {
  static constexpr Regs reads = regs<Reg::x, Reg::h>, writes = regs<Reg::x>, passes = regs<Reg::x>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T>
struct Impl<Cpu<T>, Residual> {
  struct Saved {
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const T* x = value<Reg::x>(f);
    const T* h = value<Reg::h>(f);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) s.out[e] = h[e] + x[e];
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::h, decltype(io)>, "Residual writes d h: nothing else may read the branch");
    const T* g = dout<Reg::x>(io);
    std::copy(g, g + c.tokens() * A::dim, din<Reg::h>(io));
  }
};

}  // namespace pgolf
