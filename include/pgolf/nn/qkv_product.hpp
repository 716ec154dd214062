// QkvProduct: q, k, v := n Wq^T, n Wk^T, n Wv^T (c_q [dim, dim], c_k and c_v [kv_dim, dim], PyTorch's
// default init, Muon). Registers are token-major on the CPU: q [tokens, heads * head_dim],
// k and v [tokens, kv_heads * head_dim].
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/product.hpp"
#include "pgolf/ops/cpu/linear.hpp"

namespace pgolf {

struct QkvProduct {
  static constexpr Regs reads = regs<Reg::n>, writes = regs<Reg::q, Reg::k, Reg::v>;
  template <class A>
  static constexpr RowList rows() {
    const Init init = torch_linear_init(A::dim);
    const Init q_init = matrix_init<A>(A::dim, A::dim, init), kv_init = matrix_init<A>(A::kv_dim, A::dim, init);
    const auto M = OptimGroup::muon_matrix;
    return RowList{}
        .add({.name = "attn.c_q.weight", .rows = A::dim, .cols = A::dim, .rank = 2, .init = q_init, .group = M})
        .add({.name = "attn.c_k.weight", .rows = A::kv_dim, .cols = A::dim, .rank = 2, .init = kv_init, .group = M})
        .add({.name = "attn.c_v.weight", .rows = A::kv_dim, .cols = A::dim, .rank = 2, .init = kv_init, .group = M});
  }
  template <class A>
  static constexpr int width(Reg r) { return r == Reg::q ? A::dim : A::kv_dim; }
};

template <class T>
struct Impl<Cpu<T>, QkvProduct> {
  using C = QkvProduct;
  struct Saved {
    const T* n = nullptr;
    T *q = nullptr, *k = nullptr, *v = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.q, sh.tokens() * A::dim), p.take(s.k, sh.tokens() * A::kv_dim), p.take(s.v, sh.tokens() * A::kv_dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const int n = int(c.tokens());
    s.n = value<Reg::n>(f);
    ops::cpu::linear_forward(s.n, param<C, 0>(c), s.q, n, A::dim, A::dim);
    ops::cpu::linear_forward(s.n, param<C, 1>(c), s.k, n, A::dim, A::kv_dim);
    ops::cpu::linear_forward(s.n, param<C, 2>(c), s.v, n, A::dim, A::kv_dim);
    set_value<Reg::q>(f, s.q), set_value<Reg::k>(f, s.k), set_value<Reg::v>(f, s.v);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    const int n = int(c.tokens());
    T* dn = din<Reg::n>(io);
    ops::cpu::linear_backward(dout<Reg::q>(io), s.n, param<C, 0>(c), dn, grad<C, 0>(c), n, A::dim, A::dim,
                              adds<Reg::n, decltype(io)>);
    ops::cpu::linear_backward(dout<Reg::k>(io), s.n, param<C, 1>(c), dn, grad<C, 1>(c), n, A::dim, A::kv_dim, true);
    ops::cpu::linear_backward(dout<Reg::v>(io), s.n, param<C, 2>(c), dn, grad<C, 2>(c), n, A::dim, A::kv_dim, true);
  }
};

}  // namespace pgolf
