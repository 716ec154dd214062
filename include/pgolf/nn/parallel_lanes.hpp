// The parallel two-lane residual of the strongest records (TECHNIQUES.md 13.2): from the first virtual
// layer that runs physical block `parallel_from` on, the stream is two lanes, x (lane 0) and x1
// (lane 1), both starting as the stream at that point (the model splits them before that layer's
// U-Net skip, which lane 0 alone receives). A parallel layer of block b reads both lanes as they were
// before it:
//   A = attn_scale * Attn(norm(m0 x + m1 x0) * ln)        LaneMixNorm ... BranchStash
//   M = mlp_scale * MLP(norm(x1) * ln)                     LaneNorm ... LaneMerge
//   x  := r[b,0] x  + P[b,0,0] A + P[b,1,0] M              LaneMerge
//   x1 := r[b,1] x1 + P[b,0,1] A + P[b,1,1] M
// and after the last layer the head reads their mean (LaneMean). r = parallel_resid_lambdas [blocks,
// 2] (init 1.1), P = parallel_post_lambdas [blocks, 2, 2] (init 1, [src, dst] with src 0 = attention,
// 1 = MLP), both global, scalar Adam, exported fp16; rows of blocks that never run in parallel get no
// gradient, as in the record. The attention's residual base is lane 0 itself, not its mix with x0.
//
// Spec: GptSpec.residual.parallel_from (a physical block; -1 off). GptArch then runs
// ParallelBlock (these components around the usual attention and MLP) at the parallel layers.
#pragma once

#include <cstddef>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/resid_mix.hpp"
#include "pgolf/nn/scaled_residual.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"

namespace pgolf {

// n := norm(m0 x + m1 x0), with the block's resid_mix (ResidMix's tensor); x is not redefined.
struct LaneMixNorm {
  static constexpr Regs reads = regs<Reg::x, Reg::x0>, writes = regs<Reg::n>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

// a := attn_scale * h (ScaledResidual<AttnScale>'s tensor): the attention branch, kept for the merge.
struct BranchStash {
  static constexpr Regs reads = regs<Reg::h>, writes = regs<Reg::a>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

// n := norm(x1): the MLP's input in a parallel layer.
struct LaneNorm {
  static constexpr Regs reads = regs<Reg::x1>, writes = regs<Reg::n>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

// x, x1 := the lane update above, M = mlp_scale * h (ScaledResidual<MlpScale>'s tensor).
struct LaneMerge {
  static constexpr Regs reads = regs<Reg::x, Reg::x1, Reg::a, Reg::h>, writes = regs<Reg::x, Reg::x1>;
  template <class A>
  static constexpr RowList rows() {
    return RowList{}
        .add({.name = "parallel_post_lambdas", .rows = A::blocks, .cols = 4, .rank = 2, .init = {InitKind::constant, 1.0},
              .group = OptimGroup::adam_scalar, .control = false, .scope = Scope::global})
        .add({.name = "parallel_resid_lambdas", .rows = A::blocks, .cols = 2, .rank = 2,
              .init = {InitKind::constant, 1.1}, .group = OptimGroup::adam_scalar, .control = false,
              .scope = Scope::global});
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

// x := (x + x1) / 2: the lanes merged before the final norm.
struct LaneMean {
  static constexpr Regs reads = regs<Reg::x, Reg::x1>, writes = regs<Reg::x>;
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T>
struct Impl<Cpu<T>, LaneMixNorm> {
  struct Saved {
    const T *x = nullptr, *x0 = nullptr;
    T *n = nullptr, *rstd = nullptr, *dmixed = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.n, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens()), p.take(s.dmixed, sh.tokens() * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f), s.x0 = value<Reg::x0>(f);
    const T* m = param<ResidMix>(c);
    const std::size_t N = c.tokens();
    for (std::size_t e = 0; e < N * A::dim; ++e) s.dmixed[e] = m[e % A::dim] * s.x[e] + m[A::dim + e % A::dim] * s.x0[e];
    ops::cpu::rmsnorm_forward(s.dmixed, N, A::dim, T(A::eps), s.n, s.rstd);  // dmixed holds the mix until the backward
    set_value<Reg::n>(f, s.n);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(adds<Reg::x0, decltype(io)>, "LaneMixNorm adds into d x0: x0 must be an anchor");
    constexpr bool add_x = adds<Reg::x, decltype(io)>;  // in a model the merge reads lane 0 later
    const std::size_t N = c.tokens();
    ops::cpu::rmsnorm_backward(dout<Reg::n>(io), s.n, s.rstd, N, A::dim, s.dmixed, false);
    const T* m = param<ResidMix>(c);
    T* dm = grad<ResidMix>(c);
    T *dx = din<Reg::x>(io), *dx0 = din<Reg::x0>(io);
    for (std::size_t e = 0; e < N * A::dim; ++e) {
      const std::size_t j = e % A::dim;
      dm[j] += s.dmixed[e] * s.x[e];
      dm[A::dim + j] += s.dmixed[e] * s.x0[e];
      dx[e] = (add_x ? dx[e] : T(0)) + m[j] * s.dmixed[e];
      dx0[e] += m[A::dim + j] * s.dmixed[e];
    }
  }
};

template <class T>
struct Impl<Cpu<T>, BranchStash> {
  using Scale = ScaledResidual<AttnScale>;
  struct Saved {
    const T* h = nullptr;
    T* a = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.a, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.h = value<Reg::h>(f);
    const T* sc = param<Scale>(c);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) s.a[e] = sc[e % A::dim] * s.h[e];
    set_value<Reg::a>(f, s.a);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::h, decltype(io)>, "BranchStash writes d h: nothing else reads the attention branch");
    const T* g = dout<Reg::a>(io);
    const T* sc = param<Scale>(c);
    T* ds = grad<Scale>(c);
    T* dh = din<Reg::h>(io);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) {
      dh[e] = sc[e % A::dim] * g[e];
      ds[e % A::dim] += g[e] * s.h[e];
    }
  }
};

template <class T>
struct Impl<Cpu<T>, LaneNorm> {
  struct Saved {
    T *n = nullptr, *rstd = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.n, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_forward(value<Reg::x1>(f), c.tokens(), A::dim, T(A::eps), s.n, s.rstd);
    set_value<Reg::n>(f, s.n);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::rmsnorm_backward(dout<Reg::n>(io), s.n, s.rstd, c.tokens(), A::dim, din<Reg::x1>(io),
                               adds<Reg::x1, decltype(io)>);
  }
};

template <class T>
struct Impl<Cpu<T>, LaneMerge> {
  using MScale = ScaledResidual<MlpScale>;
  struct Saved {
    const T *x = nullptr, *x1 = nullptr, *a = nullptr, *h = nullptr;
    T *out0 = nullptr, *out1 = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.out0, sh.tokens() * A::dim), p.take(s.out1, sh.tokens() * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f), s.x1 = value<Reg::x1>(f), s.a = value<Reg::a>(f), s.h = value<Reg::h>(f);
    const T* P = param<LaneMerge, 0>(c) + std::size_t(c.b) * 4;
    const T* r = param<LaneMerge, 1>(c) + std::size_t(c.b) * 2;
    const T* ms = param<MScale>(c);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) {
      const T M = ms[e % A::dim] * s.h[e];
      s.out0[e] = r[0] * s.x[e] + P[0] * s.a[e] + P[2] * M;
      s.out1[e] = r[1] * s.x1[e] + P[1] * s.a[e] + P[3] * M;
    }
    set_value<Reg::x>(f, s.out0), set_value<Reg::x1>(f, s.out1);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::x, decltype(io)> && !adds<Reg::x1, decltype(io)> && !adds<Reg::a, decltype(io)> &&
                      !adds<Reg::h, decltype(io)>,
                  "LaneMerge is the last reader of the lanes and the branches");
    const T* P = param<LaneMerge, 0>(c) + std::size_t(c.b) * 4;
    const T* r = param<LaneMerge, 1>(c) + std::size_t(c.b) * 2;
    T* dP = grad<LaneMerge, 0>(c) + std::size_t(c.b) * 4;
    T* dr = grad<LaneMerge, 1>(c) + std::size_t(c.b) * 2;
    const T* ms = param<MScale>(c);
    T* dms = grad<MScale>(c);
    const T *g0 = dout<Reg::x>(io), *g1 = dout<Reg::x1>(io);
    T *dx = din<Reg::x>(io), *dx1 = din<Reg::x1>(io), *da = din<Reg::a>(io), *dh = din<Reg::h>(io);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) {
      const std::size_t j = e % A::dim;
      const T M = ms[j] * s.h[e], dM = P[2] * g0[e] + P[3] * g1[e];
      dr[0] += g0[e] * s.x[e], dr[1] += g1[e] * s.x1[e];
      dP[0] += g0[e] * s.a[e], dP[1] += g1[e] * s.a[e], dP[2] += g0[e] * M, dP[3] += g1[e] * M;
      dms[j] += dM * s.h[e];
      dx[e] = r[0] * g0[e];
      dx1[e] = r[1] * g1[e];
      da[e] = P[0] * g0[e] + P[1] * g1[e];
      dh[e] = ms[j] * dM;
    }
  }
};

template <class T>
struct Impl<Cpu<T>, LaneMean> {
  struct Saved {
    T* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const T *x = value<Reg::x>(f), *x1 = value<Reg::x1>(f);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) s.out[e] = T(0.5) * (x[e] + x1[e]);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::x, decltype(io)> && !adds<Reg::x1, decltype(io)>, "LaneMean is the lanes' last reader");
    const T* g = dout<Reg::x>(io);
    T *dx = din<Reg::x>(io), *dx1 = din<Reg::x1>(io);
    for (std::size_t e = 0; e < c.tokens() * A::dim; ++e) dx[e] = dx1[e] = T(0.5) * g[e];
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/channel.cuh"
#include "pgolf/ops/cuda/parallel_lanes.cuh"
#include "pgolf/ops/cuda/rmsnorm.cuh"

namespace pgolf {

template <>
struct Impl<Cuda, LaneMixNorm> {
  template <class A>
  struct Resources {
    pgolf::cuda::DeviceBuffer<float> dmix;  // d(m0 x + m1 x0), one layer at a time
    explicit Resources(const Shape& sh) : dmix(sh.tokens() * std::size_t(A::dim)) {}
  };
  struct Saved {
    const float *x = nullptr, *x0 = nullptr;
    float *mixed = nullptr, *rstd = nullptr;
    Cuda::bf16* n = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.mixed, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens()), p.take(s.n, sh.tokens() * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f), s.x0 = value<Reg::x0>(f);
    ops::cuda::mix_norm_forward<A::dim>(s.x, s.x0, param<ResidMix>(c), c.tokens(), float(A::eps), s.mixed, s.n, s.rstd);
    set_value<Reg::n>(f, s.n);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(adds<Reg::x0, decltype(io)>, "LaneMixNorm adds into d x0: x0 must be an anchor");
    float* g = resources<Impl>(c).dmix.data();
    ops::cuda::rmsnorm_backward<A::dim>(dout<Reg::n>(io), s.mixed, s.rstd, c.tokens(), nullptr, g);
    float* dm = grad<ResidMix>(c);
    c.rt().colgrad.add(g, s.x, c.tokens(), A::dim, dm);
    c.rt().colgrad.add(g, s.x0, c.tokens(), A::dim, dm + A::dim);
    if constexpr (adds<Reg::x, decltype(io)>)  // in a model the merge reads lane 0 later
      ops::cuda::scale_accumulate<A::dim>(g, param<ResidMix>(c), c.tokens(), din<Reg::x>(io));
    else
      ops::cuda::scale_grad<A::dim>(g, param<ResidMix>(c), c.tokens(), din<Reg::x>(io));
    ops::cuda::scale_accumulate<A::dim>(g, param<ResidMix>(c) + A::dim, c.tokens(), din<Reg::x0>(io));
  }
};

template <>
struct Impl<Cuda, BranchStash> {
  using Scale = ScaledResidual<AttnScale>;
  struct Saved {
    const Cuda::bf16* h = nullptr;
    float* a = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.a, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.h = value<Reg::h>(f);
    ops::cuda::scale_channels<A::dim>(s.h, param<Scale>(c), c.tokens(), s.a);
    set_value<Reg::a>(f, s.a);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::h, decltype(io)>, "BranchStash writes d h: nothing else reads the attention branch");
    c.rt().colgrad.add(dout<Reg::a>(io), s.h, c.tokens(), A::dim, grad<Scale>(c));
    ops::cuda::scale_grad<A::dim>(dout<Reg::a>(io), param<Scale>(c), c.tokens(), din<Reg::h>(io));
  }
};

template <>
struct Impl<Cuda, LaneNorm> {
  struct Saved {
    const float* x1 = nullptr;
    Cuda::bf16* n = nullptr;
    float* rstd = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.n, sh.tokens() * A::dim), p.take(s.rstd, sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x1 = value<Reg::x1>(f);
    ops::cuda::rmsnorm_forward<A::dim>(s.x1, c.tokens(), float(A::eps), s.n, s.rstd);
    set_value<Reg::n>(f, s.n);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    float* d = din<Reg::x1>(io);
    ops::cuda::rmsnorm_backward<A::dim>(dout<Reg::n>(io), s.x1, s.rstd, c.tokens(), adds<Reg::x1, decltype(io)> ? d : nullptr,
                                        d);
  }
};

template <>
struct Impl<Cuda, LaneMerge> {
  using MScale = ScaledResidual<MlpScale>;
  template <class A>
  struct Resources {
    pgolf::cuda::DeviceBuffer<float> sums, dm;  // per-channel sums of the lambdas' gradients; dM
    explicit Resources(const Shape& sh) : sums(6 * std::size_t(A::dim)), dm(sh.tokens() * std::size_t(A::dim)) {}
  };
  struct Saved {
    const float *x = nullptr, *x1 = nullptr, *a = nullptr;
    const Cuda::bf16* h = nullptr;
    float *out0 = nullptr, *out1 = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.out0, sh.tokens() * A::dim), p.take(s.out1, sh.tokens() * A::dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.x = value<Reg::x>(f), s.x1 = value<Reg::x1>(f), s.a = value<Reg::a>(f), s.h = value<Reg::h>(f);
    ops::cuda::lane_merge_forward<A::dim>(s.x, s.x1, s.a, s.h, param<MScale>(c), param<LaneMerge, 0>(c) + std::size_t(c.b) * 4,
                                          param<LaneMerge, 1>(c) + std::size_t(c.b) * 2, c.tokens(), s.out0, s.out1);
    set_value<Reg::x>(f, s.out0), set_value<Reg::x1>(f, s.out1);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::x, decltype(io)> && !adds<Reg::x1, decltype(io)> && !adds<Reg::a, decltype(io)> &&
                      !adds<Reg::h, decltype(io)>,
                  "LaneMerge is the last reader of the lanes and the branches");
    const float *g0 = dout<Reg::x>(io), *g1 = dout<Reg::x1>(io);
    const float* P = param<LaneMerge, 0>(c) + std::size_t(c.b) * 4;
    const float* r = param<LaneMerge, 1>(c) + std::size_t(c.b) * 2;
    const float* ms = param<MScale>(c);
    auto& res = resources<Impl>(c);
    res.sums.fill_bytes(0);
    float* col = res.sums.data();
    const std::size_t N = c.tokens();
    auto& cg = c.rt().colgrad;
    // sum_n g M = sum_c ms[c] sum_n g h: the MLP lambdas need only the per-channel sums against h.
    cg.add(g0, s.x, N, A::dim, col + 0 * A::dim);   // r0
    cg.add(g1, s.x1, N, A::dim, col + 1 * A::dim);  // r1
    cg.add(g0, s.a, N, A::dim, col + 2 * A::dim);   // P00
    cg.add(g1, s.a, N, A::dim, col + 3 * A::dim);   // P01
    cg.add(g0, s.h, N, A::dim, col + 4 * A::dim);   // P10 / ms
    cg.add(g1, s.h, N, A::dim, col + 5 * A::dim);   // P11 / ms
    ops::cuda::lane_lambda_grads<A::dim>(col, ms, grad<LaneMerge, 1>(c) + std::size_t(c.b) * 2,
                                         grad<LaneMerge, 0>(c) + std::size_t(c.b) * 4);
    float* dm = res.dm.data();
    ops::cuda::lane_merge_backward<A::dim>(g0, g1, P, r, N, din<Reg::x>(io), din<Reg::x1>(io), din<Reg::a>(io), dm);
    cg.add(dm, s.h, N, A::dim, grad<MScale>(c));
    ops::cuda::scale_grad<A::dim>(dm, ms, N, din<Reg::h>(io));
  }
};

template <>
struct Impl<Cuda, LaneMean> {
  struct Saved {
    float* out = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.out, sh.tokens() * A::dim); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    ops::cuda::lane_mean_forward(value<Reg::x>(f), value<Reg::x1>(f), c.tokens() * A::dim, s.out);
    set_value<Reg::x>(f, s.out);
  }
  static void backward(auto& c, Saved&, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::x, decltype(io)> && !adds<Reg::x1, decltype(io)>, "LaneMean is the lanes' last reader");
    ops::cuda::lane_mean_backward(dout<Reg::x>(io), c.tokens() * A::dim, din<Reg::x>(io), din<Reg::x1>(io));
  }
};

}  // namespace pgolf
#endif
