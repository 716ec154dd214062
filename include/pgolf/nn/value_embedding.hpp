// ValueEmbedding: the records' shared value embedding (TECHNIQUES.md 4.9). One table and projection
// for the whole model give every token a value-side vector,
//   ve = sigma * (Eve[ids] Pve^T)                 [tokens, kv_dim]
// and at the virtual layers whose physical block is in ve_blocks the attention value gets it:
//   v := v + lambda_i * ve,   i = the block's position in ve_blocks (ve_layer_scales[i]);
// at the other layers v passes untouched. It sits right after QkNormRope (v is not normed or rotated,
// and XSA later sees the augmented v, as the Frugendorff's code does).
//   ve_shared.embed.weight [vocab, ve_dim]   N(0, ve_init_std^2), token Adam
//   ve_shared.proj.weight  [kv_dim, ve_dim]  orthogonal * 1/sqrt(2 * physical blocks) under the
//                                            records' orthogonal init, else PyTorch's Linear
//                                            init (side_projection_init); Muon
//   ve_shared.scale        [1]               sigma, init ve_scale_init, scalar Adam, control
//   ve_layer_scales        [count]           lambda, init 1, scalar Adam, control
// ve is recomputed at each use (a gather and a [tokens, ve_dim] x [ve_dim, kv_dim] product), so the
// backward recomputes it too; the gradients of Eve, Pve and sigma collect over every use (several
// blocks, several loops):
//   dlambda_i += sum(dv * ve);  dsigma += lambda_i sum(dv * E Pve^T);
//   dPve += lambda_i sigma dv^T Eve[ids];  dEve[ids] += lambda_i sigma dv Pve.
//
// Spec: GptSpec.attention.ve_dim (0: off), ve_blocks, ve_init_std, ve_scale_init.
#pragma once

#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/product.hpp"

namespace pgolf {

struct ValueEmbedding {
  static constexpr Regs reads = regs<Reg::v>, writes = regs<Reg::v>, passes = regs<Reg::v>;
  template <class A>
  static constexpr int width(Reg) { return A::kv_dim; }
  template <class A>
  static constexpr int count() { return A::spec.attention.ve_blocks.count(A::blocks); }
  // ve_layer_scales' index of block b, or -1 where v passes untouched.
  template <class A>
  static constexpr int member(int b) { return A::spec.attention.ve_blocks.index(b, A::blocks); }
  template <class A>
  static constexpr Init proj_init() { return side_projection_init<A>(A::spec.attention.ve_dim); }
  // The rows are built by assignment: nvcc's host pass rejects a member access (A::spec.x.y) inside
  // a designated initializer.
  template <class A>
  static constexpr Row row(const char* name, int rows, int cols, int rank, Init init, OptimGroup group, bool control) {
    Row r;
    r.name = name, r.rows = rows, r.cols = cols, r.rank = rank, r.init = init, r.group = group, r.control = control;
    r.scope = Scope::global;
    return r;
  }
  template <class A>
  static constexpr RowList rows() {
    constexpr int E = A::spec.attention.ve_dim;
    RowList r;
    r.add(row<A>("ve_shared.embed.weight", A::vocab, E, 2, Init{InitKind::normal, A::spec.attention.ve_init_std},
                 OptimGroup::adam_embed, false));
    r.add(row<A>("ve_shared.proj.weight", A::kv_dim, E, 2, proj_init<A>(), OptimGroup::muon_matrix, false));
    r.add(row<A>("ve_shared.scale", 1, 1, 1, Init{InitKind::constant, A::spec.attention.ve_scale_init},
                 OptimGroup::adam_scalar, true));
    r.add(row<A>("ve_layer_scales", count<A>(), 1, 1, Init{InitKind::ones}, OptimGroup::adam_scalar, true));
    return r;
  }
};

template <class T>
struct Impl<Cpu<T>, ValueEmbedding> {
  struct Saved {
    T* out = nullptr;
  };
  template <class A>
  struct Resources {
    std::vector<T> raw;  // Eve[ids] Pve^T [tokens, kv_dim], recomputed at each use
    explicit Resources(const Shape& sh) : raw(sh.tokens() * std::size_t(A::kv_dim)) {}
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::kv_dim); }

  // raw = Eve[ids] Pve^T.
  template <class A>
  static void project(auto& c, T* raw) {
    constexpr int E = A::spec.attention.ve_dim, K = A::kv_dim;
    const T* eve = param<ValueEmbedding, 0>(c);
    const T* pve = param<ValueEmbedding, 1>(c);
    for (std::size_t n = 0; n < c.tokens(); ++n) {
      const T* e = eve + std::size_t(c.ids()[n]) * E;
      for (int o = 0; o < K; ++o) {
        T acc = 0;
        for (int k = 0; k < E; ++k) acc += e[k] * pve[std::size_t(o) * E + k];
        raw[n * K + o] = acc;
      }
    }
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const int i = ValueEmbedding::member<A>(c.b);
    if (i < 0) return;  // v passes
    T* raw = resources<Impl>(c).raw.data();
    project<A>(c, raw);
    const T ls = param<ValueEmbedding, 3>(c)[i] * param<ValueEmbedding, 2>(c)[0];
    const T* v = value<Reg::v>(f);
    for (std::size_t e = 0; e < c.tokens() * A::kv_dim; ++e) s.out[e] = v[e] + ls * raw[e];
    set_value<Reg::v>(f, s.out);
  }
  // dv passes unchanged (v := v + lambda ve); only the tensors' gradients are added.
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int E = A::spec.attention.ve_dim, K = A::kv_dim;
    const int i = ValueEmbedding::member<A>(c.b);
    if (i < 0) return;
    T* raw = resources<Impl>(c).raw.data();
    project<A>(c, raw);
    const T* g = dout<Reg::v>(io);
    const T lambda = param<ValueEmbedding, 3>(c)[i], sigma = param<ValueEmbedding, 2>(c)[0], ls = lambda * sigma;
    const T* eve = param<ValueEmbedding, 0>(c);
    const T* pve = param<ValueEmbedding, 1>(c);
    T* deve = grad<ValueEmbedding, 0>(c);
    T* dpve = grad<ValueEmbedding, 1>(c);
    T dot = 0;  // sum(dv * Eve[ids] Pve^T)
    for (std::size_t n = 0; n < c.tokens(); ++n) {
      const std::size_t id = std::size_t(c.ids()[n]);
      const T* e = eve + id * E;
      for (int o = 0; o < K; ++o) {
        const T go = g[n * K + o];
        dot += go * raw[n * K + o];
        for (int k = 0; k < E; ++k) {
          dpve[std::size_t(o) * E + k] += ls * go * e[k];
          deve[id * E + k] += ls * go * pve[std::size_t(o) * E + k];
        }
      }
    }
    grad<ValueEmbedding, 3>(c)[i] += sigma * dot;
    grad<ValueEmbedding, 2>(c)[0] += lambda * dot;
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/embedding.cuh"
#include "pgolf/ops/cuda/value_embedding.cuh"

namespace pgolf {

// v is head-major bf16 ([batch, kv_heads, seq, head_dim]) on the GPU, and its gradient head-major
// fp32. Forward: gather Eve[ids] (bf16), one product into raw [tokens, kv_dim] (fp32, token-major),
// one kernel v + lambda sigma raw into the head-major output. Backward: the product again, one
// kernel (a warp per token) for the token-major bf16 lambda sigma dv and the per-token sum(dv raw), a
// fixed-order reduction of those for lambda and sigma, one product pair for dPve and dE (rows), and
// the deterministic sorted scatter of dE into Eve's gradient.
template <>
struct Impl<Cuda, ValueEmbedding> {
  using bf16 = Cuda::bf16;
  template <class A>
  struct Resources {
    static constexpr int E = A::spec.attention.ve_dim;
    ops::cuda::EmbeddingBackward back;
    cuda::DeviceBuffer<bf16> e, gs;      // Eve[ids] [tokens, E]; lambda sigma dv [tokens, kv_dim]
    cuda::DeviceBuffer<float> raw, de, rowdot;
    explicit Resources(const Shape& sh)
        : back(sh.tokens(), A::vocab),
          e(sh.tokens() * std::size_t(E)),
          gs(sh.tokens() * std::size_t(A::kv_dim)),
          raw(sh.tokens() * std::size_t(A::kv_dim)),
          de(sh.tokens() * std::size_t(E)),
          rowdot(sh.tokens()) {}
  };
  struct Saved {
    bf16* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::kv_dim); }

  template <class A>
  static void project(auto& c, Resources<A>& r) {
    constexpr int E = A::spec.attention.ve_dim;
    static_assert(E % 8 == 0, "GptSpec.attention.ve_dim must be a multiple of 8 for the CUDA kernels");
    ops::cuda::embedding_forward<E>(c.ids(), c.tokens(), param<ValueEmbedding, 0>(c), r.e.data());
    Cuda::linear(c.rt().gemm, int(c.tokens()), r.e.data(), weight<ValueEmbedding, 1>(c), r.raw.data(), E, A::kv_dim,
                 cuda::DType::f32);
  }
  template <class A>
  static ops::cuda::VeShape shape(const auto& c) {
    return {c.batch(), c.seq(), A::kv_heads, A::head_dim};
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    const int i = ValueEmbedding::member<A>(c.b);
    if (i < 0) return;
    auto& r = resources<Impl>(c);
    project<A>(c, r);
    ops::cuda::ve_add_forward(value<Reg::v>(f), r.raw.data(), param<ValueEmbedding, 3>(c) + i,
                              param<ValueEmbedding, 2>(c), shape<A>(c), s.out);
    set_value<Reg::v>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int E = A::spec.attention.ve_dim;
    const int i = ValueEmbedding::member<A>(c.b);
    if (i < 0) return;
    auto& r = resources<Impl>(c);
    project<A>(c, r);
    ops::cuda::ve_backward_rows(dout<Reg::v>(io), r.raw.data(), param<ValueEmbedding, 3>(c) + i,
                                param<ValueEmbedding, 2>(c), shape<A>(c), r.gs.data(), r.rowdot.data());
    ops::cuda::ve_scalar_grads(r.rowdot.data(), c.tokens(), param<ValueEmbedding, 3>(c) + i,
                               param<ValueEmbedding, 2>(c), grad<ValueEmbedding, 3>(c) + i, grad<ValueEmbedding, 2>(c));
    // dPve += gs^T e;  de = gs Pve.
    Cuda::linear_backward(c.rt().gemm, int(c.tokens()), r.gs.data(), r.e.data(), weight<ValueEmbedding, 1>(c),
                          grad<ValueEmbedding, 1>(c), r.de.data(), cuda::DType::f32, E, A::kv_dim, false);
    r.back.template run<E>(c.ids(), c.tokens(), r.de.data(), grad<ValueEmbedding, 0>(c));
  }
};

}  // namespace pgolf
#endif
