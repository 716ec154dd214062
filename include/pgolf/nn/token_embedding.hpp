// TokenEmbedding<Def>: x := E[ids] (E [vocab, dim], the token Adam group; Def names it and gives its
// init), and Anchor: x0 := x, the embedding anchor every ResidMix reads. x0 is the same tensor as
// the stream at that point; its gradient, collected over every layer, joins the stream's there.
#pragma once

#include <algorithm>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/embedding.hpp"

namespace pgolf {

template <class Def>  // Def::name, Def::init<A>
struct TokenEmbedding {
  static constexpr Regs reads = 0, writes = regs<Reg::x>;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}.add({.name = Def::name, .rows = A::vocab, .cols = A::dim, .rank = 2, .init = Def::template init<A>,
                          .group = OptimGroup::adam_embed, .control = false, .scope = Scope::global});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

struct Anchor {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::x0>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T, class Def>
struct Impl<Cpu<T>, TokenEmbedding<Def>> {
  using C = TokenEmbedding<Def>;
  struct Saved {
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    ops::cpu::embedding_forward(c.ids(), c.tokens(), param<C>(c), A::vocab, A::dim, s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::embedding_backward(c.ids(), c.tokens(), dout<Reg::x>(io), A::dim, grad<C>(c));
  }
};

template <class T>
struct Impl<Cpu<T>, Anchor> {
  static void forward(auto&, NoState&, Flow<Cpu<T>>& f) { set_value<Reg::x0>(f, value<Reg::x>(f)); }
  static void backward(auto& c, NoState&, auto& io) {
    using A = arch_of<decltype(c)>;
    const T* g0 = dout<Reg::x0>(io);
    T* g = din<Reg::x>(io);
    const std::size_t n = c.tokens() * A::dim;
    if constexpr (adds<Reg::x, decltype(io)>)
      for (std::size_t e = 0; e < n; ++e) g[e] += g0[e];
    else
      std::copy(g0, g0 + n, g);
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/embedding.cuh"

namespace pgolf {

// Gather with 16-byte loads; the backward is a deterministic sorted segment sum (CUB).
template <class Def>
struct Impl<Cuda, TokenEmbedding<Def>> {
  using C = TokenEmbedding<Def>;
  template <class A>
  struct Resources {
    ops::cuda::EmbeddingBackward back;
    explicit Resources(const Shape& sh) : back(sh.tokens(), A::vocab) {}
  };
  struct Saved {
    float* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    ops::cuda::embedding_forward<A::dim>(c.ids(), c.tokens(), param<C>(c), s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    resources<Impl>(c).back.template run<A::dim>(c.ids(), c.tokens(), dout<Reg::x>(io), grad<C>(c));
  }
};

template <>
struct Impl<Cuda, Anchor> {
  static void forward(auto&, NoState&, Flow<Cuda>& f) { set_value<Reg::x0>(f, value<Reg::x>(f)); }
  static void backward(auto& c, NoState&, auto& io) {
    using A = arch_of<decltype(c)>;
    const std::size_t n = c.tokens() * A::dim;
    if constexpr (adds<Reg::x, decltype(io)>)
      ops::cuda::add_into(dout<Reg::x0>(io), n, din<Reg::x>(io));
    else
      PGOLF_CUDA_CHECK(cudaMemcpy(din<Reg::x>(io), dout<Reg::x0>(io), n * sizeof(float), cudaMemcpyDeviceToDevice));
  }
};

}  // namespace pgolf
#endif
