// LoopPositions: the Frugendorff's loop-position embeddings. A model that runs its blocks `loops`
// times (a cyclic schedule) adds p[l] to the residual stream at the first virtual layer of loop l,
// before that layer's block, so each pass through the shared blocks sees where it is:
//   x := x + p[l]   at v = l * (layers / loops);   elsewhere x passes.
// p = loop_pos [loops, dim], scalar Adam, exported fp16 (a small tensor, not a control one).
// Init: N(0, std^2) (the submitted code, 1.1478) or std times orthonormal rows (the QR form its PR
// describes). dp[l] = sum over tokens of the stream's gradient at that point.
//
// Spec: GptSpec.depth.loop_embedding = LoopEmbedding::off | random | orthogonal, loop_embedding_std.
#pragma once

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"

namespace pgolf {

enum class LoopEmbedding { off, random, orthogonal };

struct LoopPositions {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::x>, passes = regs<Reg::x>;
  template <class A>
  static constexpr RowList rows() {
    // Written without a reference to the spec or a returned temporary's add({...}): nvcc's host pass
    // mis-parses those forms here.
    Init init{InitKind::normal, A::spec.depth.loop_embedding_std};
    if (A::spec.depth.loop_embedding == LoopEmbedding::orthogonal) init.kind = InitKind::orthogonal;
    Row row{};
    row.name = "loop_pos", row.rows = A::spec.depth.loops, row.cols = A::dim, row.rank = 2, row.init = init;
    row.group = OptimGroup::adam_scalar, row.control = false, row.scope = Scope::global;
    RowList r;
    r.add(row);
    return r;
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
  // The loop virtual layer v starts, or -1 (v is inside a loop).
  template <class A>
  static constexpr int loop_started(int v) {
    constexpr int per = A::spec.depth.layers / A::spec.depth.loops;
    return v % per == 0 ? v / per : -1;
  }
};

template <class T>
struct Impl<Cpu<T>, LoopPositions> {
  struct Saved {
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const int l = LoopPositions::loop_started<A>(c.v);
    if (l < 0) return;
    const T* x = value<Reg::x>(f);
    const T* p = param<LoopPositions>(c) + std::size_t(l) * A::dim;
    for (std::size_t n = 0; n < c.tokens(); ++n)
      for (int j = 0; j < A::dim; ++j) s.out[n * A::dim + j] = x[n * A::dim + j] + p[j];
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    const int l = LoopPositions::loop_started<A>(c.v);
    if (l < 0) return;
    const T* g = dout<Reg::x>(io);
    T* dp = grad<LoopPositions>(c) + std::size_t(l) * A::dim;
    for (std::size_t n = 0; n < c.tokens(); ++n)
      for (int j = 0; j < A::dim; ++j) dp[j] += g[n * A::dim + j];
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/channel.cuh"

namespace pgolf {

template <>
struct Impl<Cuda, LoopPositions> {
  struct Saved {
    float* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    const int l = LoopPositions::loop_started<A>(c.v);
    if (l < 0) return;
    ops::cuda::add_channels<A::dim>(value<Reg::x>(f), param<LoopPositions>(c) + std::size_t(l) * A::dim, c.tokens(),
                                    s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    const int l = LoopPositions::loop_started<A>(c.v);
    if (l < 0) return;
    c.rt().colgrad.add(dout<Reg::x>(io), static_cast<const float*>(nullptr), c.tokens(), A::dim,
                       grad<LoopPositions>(c) + std::size_t(l) * A::dim);
  }
};

}  // namespace pgolf
#endif
