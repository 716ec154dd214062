// BigramHash: the records' hashed bigram embedding, added to the token embedding before its norm:
//   x := x + beta * (Eb[h] Pb^T)            (x := x + beta * Eb[h] when bigram_dim == dim: no Pb)
// h the bucket of (previous token, token) within each sequence row:
//   h_0 = Vb - 1;   h_t = ((36313 * u_t) XOR (27191 * u_{t-1})) mod (Vb - 1),  t >= 1,
// Vb = bigram_buckets. Tensors: bigram.embed.weight Eb [Vb, db] zero init (token Adam group),
// bigram.proj.weight Pb [dim, db] (Muon; orthogonal with gain 1/sqrt(2 * physical blocks) under the
// records' orthogonal init, else PyTorch's Linear init: Eb starts at zero, so a zero Pb would never
// train; the orthogonal init applies whatever Pb's size, where the records' rule, both dims >= 64,
// would leave a small Pb at its constructor's zeros), bigram.scale beta [1] init bigram_scale_init
// (scalar Adam, control).
// Backward (the stream's gradient passes through): with dP = beta dx,
//   dEb[h] += dP Pb (a deterministic scatter-add),  dPb += dP^T Eb[h],  dbeta += sum(dx * Eb[h] Pb^T).
//
// The hash mirrors the reference's int32 tensor arithmetic exactly: both products wrap to int32
// (36313 * u exceeds INT32_MAX for u >= 59,139, which a 65,536-token vocabulary can hold), the XOR is
// taken on the wrapped values, and `%` is torch.remainder, whose result takes the divisor's sign, so
// a negative XOR still lands in [0, Vb - 1). Computing in int64 instead would differ for such ids.
//
// Spec: GptSpec.embedding.bigram_buckets (0: off), bigram_dim, bigram_scale_init; GptSpec.init.orthogonal.
#pragma once

#include <cstdint>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/core/config.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/product.hpp"
#include "pgolf/ops/cpu/embedding.hpp"
#include "pgolf/ops/cpu/linear.hpp"

namespace pgolf {

// The bucket of token `cur` preceded by `prev` (t >= 1), as the reference's int32 tensors compute it.
PGOLF_HD constexpr std::int32_t bigram_bucket(std::int32_t cur, std::int32_t prev, int buckets) {
  const std::uint32_t a = 36313u * std::uint32_t(cur), b = 27191u * std::uint32_t(prev);
  const std::int32_t x = std::int32_t(a ^ b);  // two's complement wraparound (C++20), as int32 tensors
  const std::int32_t m = buckets - 1;
  const std::int32_t r = x % m;
  return r < 0 ? r + m : r;  // torch.remainder: the divisor's sign
}
// The bucket at position t of a row whose token is ids[n] (n the flat index, t = n % seq).
PGOLF_HD constexpr std::int32_t bigram_bucket_at(const std::int32_t* ids, std::size_t n, int t, int buckets) {
  return t == 0 ? std::int32_t(buckets - 1) : bigram_bucket(ids[n], ids[n - 1], buckets);
}

struct BigramHash {
  static constexpr Regs reads = regs<Reg::x>, writes = regs<Reg::x>, passes = regs<Reg::x>;
  template <class A>
  static constexpr int buckets = A::spec.embedding.bigram_buckets;
  template <class A>
  static constexpr int bdim = A::spec.embedding.bigram_dim;
  template <class A>
  static constexpr bool projected = bdim<A> != A::dim;
  // Rows: 0 the table, 1 the projection (when projected), then the scale.
  template <class A>
  static constexpr int scale_row = projected<A> ? 2 : 1;
  template <class A>
  static constexpr Init proj_init() { return side_projection_init<A>(bdim<A>); }
  template <class A>
  static constexpr RowList rows() {
    // (No member access inside the designated initialisers: nvcc's front end mangles it.)
    constexpr double beta0 = A::spec.embedding.bigram_scale_init;
    RowList l;
    l.add({.name = "bigram.embed.weight", .rows = buckets<A>, .cols = bdim<A>, .rank = 2, .init = {InitKind::zeros},
           .group = OptimGroup::adam_embed, .control = false, .scope = Scope::global});
    if (projected<A>)
      l.add({.name = "bigram.proj.weight", .rows = A::dim, .cols = bdim<A>, .rank = 2, .init = proj_init<A>(),
             .group = OptimGroup::muon_matrix, .control = false, .scope = Scope::global});
    l.add({.name = "bigram.scale", .rows = 1, .cols = 1, .rank = 1,
           .init = {InitKind::constant, beta0}, .group = OptimGroup::adam_scalar,
           .control = true, .scope = Scope::global});
    return l;
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T>
struct Impl<Cpu<T>, BigramHash> {
  using C = BigramHash;
  struct Saved {
    std::int32_t* h = nullptr;  // bucket per token
    T *g = nullptr, *p = nullptr, *out = nullptr;  // Eb[h] [N, db], Eb[h] Pb^T [N, dim], x + beta p
    T *dp = nullptr, *dg = nullptr;                // backward scratch
  };
  template <class A>
  static void plan(ArenaPlan& pl, Saved& s, const Shape& sh) {
    const std::size_t N = sh.tokens();
    pl.take(s.h, N), pl.take(s.g, N * C::bdim<A>), pl.take(s.out, N * A::dim), pl.take(s.dp, N * A::dim);
    if constexpr (C::projected<A>) pl.take(s.p, N * A::dim), pl.take(s.dg, N * C::bdim<A>);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    constexpr int Vb = C::buckets<A>, db = C::bdim<A>, D = A::dim;
    const std::size_t N = c.tokens();
    const std::int32_t* ids = c.ids();
    for (std::size_t n = 0; n < N; ++n) s.h[n] = bigram_bucket_at(ids, n, int(n % std::size_t(c.seq())), Vb);
    ops::cpu::embedding_forward(s.h, N, param<C, 0>(c), Vb, db, s.g);
    const T* p = s.g;
    if constexpr (C::projected<A>) {
      ops::cpu::linear_forward(s.g, param<C, 1>(c), s.p, int(N), db, D);
      p = s.p;
    }
    const T beta = param<C, C::scale_row<A>>(c)[0];
    const T* x = value<Reg::x>(f);
    for (std::size_t e = 0; e < N * D; ++e) s.out[e] = x[e] + beta * p[e];
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int db = C::bdim<A>, D = A::dim;
    const std::size_t N = c.tokens();
    const T* dx = dout<Reg::x>(io);  // also d(input): the stream passes through
    const T beta = param<C, C::scale_row<A>>(c)[0];
    const T* p = C::projected<A> ? s.p : s.g;
    T dbeta = 0;
    for (std::size_t e = 0; e < N * D; ++e) dbeta += dx[e] * p[e], s.dp[e] = beta * dx[e];
    grad<C, C::scale_row<A>>(c)[0] += dbeta;
    const T* dg = s.dp;
    if constexpr (C::projected<A>) {
      ops::cpu::linear_backward(s.dp, s.g, param<C, 1>(c), s.dg, grad<C, 1>(c), int(N), db, D, false);
      dg = s.dg;
    }
    ops::cpu::embedding_backward(s.h, N, dg, db, grad<C, 0>(c));
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/bigram_hash.cuh"
#include "pgolf/ops/cuda/embedding.cuh"

namespace pgolf {

// Hash kernel, a gather of Eb's rows (bf16 for the cuBLASLt product, fp32 without a projection),
// the product into fp32, and x + beta p. Backward: one warp per row writes beta dx and the row's
// <dx, p>, whose sum (ColumnGrad over one column) is dbeta; the product's backward; the table's
// gradient by the token embedding's deterministic sorted scatter-add over the buckets.
template <>
struct Impl<Cuda, BigramHash> {
  using C = BigramHash;
  template <class A>
  struct Resources {
    ops::cuda::EmbeddingBackward back;
    explicit Resources(const Shape& sh) : back(sh.tokens(), C::buckets<A>) {}
  };
  struct Saved {
    std::int32_t* h = nullptr;
    Cuda::bf16* g = nullptr;  // Eb[h] in bf16 (projected)
    float *p = nullptr, *out = nullptr, *row = nullptr, *dg = nullptr;
    Cuda::bf16* dp = nullptr;  // beta dx in bf16 (projected)
  };
  template <class A>
  static void plan(ArenaPlan& pl, Saved& s, const Shape& sh) {
    const std::size_t N = sh.tokens();
    pl.take(s.h, N), pl.take(s.p, N * A::dim), pl.take(s.out, N * A::dim), pl.take(s.row, N);
    if constexpr (C::projected<A>) pl.take(s.g, N * C::bdim<A>), pl.take(s.dp, N * A::dim), pl.take(s.dg, N * C::bdim<A>);
    else pl.take(s.dg, N * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    constexpr int Vb = C::buckets<A>, db = C::bdim<A>, D = A::dim;
    static_assert(db % 4 == 0, "GptSpec.embedding.bigram_dim must be a multiple of 4 for the CUDA kernels");
    static_assert(D % 32 == 0, "GptSpec.dim must be a multiple of 32 for the CUDA kernels");
    const std::size_t N = c.tokens();
    ops::cuda::bigram_hash(c.ids(), N, c.seq(), Vb, s.h);
    if constexpr (C::projected<A>) {
      ops::cuda::embedding_forward<db>(s.h, N, param<C, 0>(c), s.g);
      Cuda::linear(c.rt().gemm, int(N), s.g, weight<C, 1>(c), s.p, db, D, cuda::DType::f32);
    } else {
      ops::cuda::embedding_forward<db>(s.h, N, param<C, 0>(c), s.p);
    }
    ops::cuda::bigram_add<D>(value<Reg::x>(f), s.p, param<C, C::scale_row<A>>(c), N, s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    constexpr int db = C::bdim<A>, D = A::dim;
    const std::size_t N = c.tokens();
    const float* dx = dout<Reg::x>(io);
    const float* beta = param<C, C::scale_row<A>>(c);
    if constexpr (C::projected<A>) {
      ops::cuda::bigram_backward_rows<D>(dx, s.p, beta, N, s.dp, s.row);
      Cuda::linear_backward(c.rt().gemm, int(N), s.dp, s.g, weight<C, 1>(c), grad<C, 1>(c), s.dg, cuda::DType::f32, db,
                            D, false);
    } else {
      ops::cuda::bigram_backward_rows<D>(dx, s.p, beta, N, s.dg, s.row);
    }
    c.rt().colgrad.add(s.row, static_cast<const float*>(nullptr), N, 1, grad<C, C::scale_row<A>>(c));
    resources<Impl>(c).back.template run<db>(s.h, N, s.dg, grad<C, 0>(c));
  }
};

}  // namespace pgolf
#endif
