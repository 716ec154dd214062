// PackedQkv<Def>: q | k | v := n W^T with one weight W [dim + 2 kv_dim, dim] (the PRISM harness's
// attn.qkv), split into the q, k, v registers.
#pragma once

#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/linear.hpp"

namespace pgolf {

template <class Def>  // Def::name, Def::init<A>
struct PackedQkv {
  static constexpr Regs reads = regs<Reg::n>, writes = regs<Reg::q, Reg::k, Reg::v>;
  template <class A>
  static constexpr int kOut = A::dim + 2 * A::kv_dim;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}.add({.name = Def::name, .rows = kOut<A>, .cols = A::dim, .rank = 2, .init = Def::template init<A>,
                          .group = OptimGroup::muon_matrix, .control = false, .scope = Scope::block});
  }
  template <class A>
  static constexpr int width(Reg r) { return r == Reg::q ? A::dim : A::kv_dim; }
};

template <class T, class Def>
struct Impl<Cpu<T>, PackedQkv<Def>> {
  using C = PackedQkv<Def>;
  template <class A>
  struct Resources {
    std::vector<T> dqkv;
    explicit Resources(const Shape& sh) : dqkv(sh.tokens() * std::size_t(C::template kOut<A>)) {}
  };
  struct Saved {
    const T* n = nullptr;
    T *qkv = nullptr, *q = nullptr, *k = nullptr, *v = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    const std::size_t N = sh.tokens();
    p.take(s.qkv, N * C::template kOut<A>), p.take(s.q, N * A::dim), p.take(s.k, N * A::kv_dim);
    p.take(s.v, N * A::kv_dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    constexpr int W = C::template kOut<A>, D = A::dim, K = A::kv_dim;
    s.n = value<Reg::n>(f);
    ops::cpu::linear_forward(s.n, param<C>(c), s.qkv, int(c.tokens()), D, W);
    for (std::size_t t = 0; t < c.tokens(); ++t) {
      for (int i = 0; i < D; ++i) s.q[t * D + i] = s.qkv[t * W + i];
      for (int i = 0; i < K; ++i) {
        s.k[t * K + i] = s.qkv[t * W + D + i];
        s.v[t * K + i] = s.qkv[t * W + D + K + i];
      }
    }
    set_value<Reg::q>(f, s.q), set_value<Reg::k>(f, s.k), set_value<Reg::v>(f, s.v);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int W = C::template kOut<A>, D = A::dim, K = A::kv_dim;
    T* dqkv = resources<Impl>(c).dqkv.data();
    const T *dq = dout<Reg::q>(io), *dk = dout<Reg::k>(io), *dv = dout<Reg::v>(io);
    for (std::size_t t = 0; t < c.tokens(); ++t) {
      for (int i = 0; i < D; ++i) dqkv[t * W + i] = dq[t * D + i];
      for (int i = 0; i < K; ++i) {
        dqkv[t * W + D + i] = dk[t * K + i];
        dqkv[t * W + D + K + i] = dv[t * K + i];
      }
    }
    ops::cpu::linear_backward(dqkv, s.n, param<C>(c), din<Reg::n>(io), grad<C>(c), int(c.tokens()), D, W,
                              adds<Reg::n, decltype(io)>);
  }
};

}  // namespace pgolf
