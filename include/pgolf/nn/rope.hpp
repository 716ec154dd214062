// Rope: q, k := RoPE(q), RoPE(k) on the first rope_dims of each head (no Q/K norm; the PRISM
// harness's Transformer baseline with RoPE). GPT blocks use QkNormRope.
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/rope.hpp"

namespace pgolf {

struct Rope {
  static constexpr Regs reads = regs<Reg::q, Reg::k>, writes = regs<Reg::q, Reg::k>;
  template <class A>
  static constexpr int width(Reg r) { return r == Reg::q ? A::dim : A::kv_dim; }
};

template <class T>
struct Impl<Cpu<T>, Rope> {
  template <class A>
  struct Resources {
    ops::cpu::RopeTable<T> rope;
    explicit Resources(const Shape& sh) : rope(sh.seq, A::rope_dims, A::rope_base) {}
  };
  struct Saved {
    T *q = nullptr, *k = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.q, sh.tokens() * A::dim), p.take(s.k, sh.tokens() * A::kv_dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const auto& rope = resources<Impl>(c).rope;
    ops::cpu::rope_forward(value<Reg::q>(f), s.q, c.batch(), c.seq(), A::heads, A::head_dim, rope);
    ops::cpu::rope_forward(value<Reg::k>(f), s.k, c.batch(), c.seq(), A::kv_heads, A::head_dim, rope);
    set_value<Reg::q>(f, s.q), set_value<Reg::k>(f, s.k);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    const auto& rope = resources<Impl>(c).rope;
    ops::cpu::rope_backward(dout<Reg::q>(io), din<Reg::q>(io), c.batch(), c.seq(), A::heads, A::head_dim, rope);
    ops::cpu::rope_backward(dout<Reg::k>(io), din<Reg::k>(io), c.batch(), c.seq(), A::kv_heads, A::head_dim, rope);
  }
};

}  // namespace pgolf
