// QkNormRope: q, k := RoPE(RMSNorm_head(q)), RoPE(RMSNorm_head(k)): per-head weightless RMSNorm, then
// half-split rotary embedding on the first rope_dims of each head (partial RoPE when fewer than the
// head dim). v passes untouched. The rotation tables are built once per model.
#pragma once

#include <cmath>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"
#include "pgolf/ops/cpu/rope.hpp"

namespace pgolf {

// The RoPE base at sequence length seq: the spec's base, NTK-scaled when seq exceeds the training
// length the architecture names (rope_train_seq_len > 0), base * (seq / train)^(rd / (rd - 2)).
template <class A>
double rope_base_at(int seq) {
  if constexpr (requires { A::rope_train_seq_len; })
    if constexpr (A::rope_train_seq_len > 0)  // a constant 0 divisor would draw nvcc's warning
      if (seq > A::rope_train_seq_len)
        return A::rope_base * std::pow(double(seq) / double(A::rope_train_seq_len),
                                       double(A::rope_dims) / double(A::rope_dims - 2));
  return A::rope_base;
}

struct QkNormRope {
  static constexpr Regs reads = regs<Reg::q, Reg::k>, writes = regs<Reg::q, Reg::k>;
  template <class A>
  static constexpr int width(Reg r) { return r == Reg::q ? A::dim : A::kv_dim; }
};

template <class T>
struct Impl<Cpu<T>, QkNormRope> {
  template <class A>
  struct Resources {
    ops::cpu::RopeTable<T> rope;
    explicit Resources(const Shape& sh) : rope(sh.seq, A::rope_dims, rope_base_at<A>(sh.seq)) {}
  };
  struct Saved {
    T *qn = nullptr, *rstd_q = nullptr, *kn = nullptr, *rstd_k = nullptr, *q = nullptr, *k = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    const std::size_t N = sh.tokens();
    p.take(s.qn, N * A::dim), p.take(s.rstd_q, N * A::heads), p.take(s.kn, N * A::kv_dim);
    p.take(s.rstd_k, N * A::kv_heads), p.take(s.q, N * A::dim), p.take(s.k, N * A::kv_dim);
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const auto& rope = resources<Impl>(c).rope;
    const std::size_t N = c.tokens();
    const T eps = T(A::eps);
    ops::cpu::rmsnorm_forward(value<Reg::q>(f), N * A::heads, A::head_dim, eps, s.qn, s.rstd_q);
    ops::cpu::rmsnorm_forward(value<Reg::k>(f), N * A::kv_heads, A::head_dim, eps, s.kn, s.rstd_k);
    ops::cpu::rope_forward(s.qn, s.q, c.batch(), c.seq(), A::heads, A::head_dim, rope);
    ops::cpu::rope_forward(s.kn, s.k, c.batch(), c.seq(), A::kv_heads, A::head_dim, rope);
    set_value<Reg::q>(f, s.q), set_value<Reg::k>(f, s.k);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    const auto& rope = resources<Impl>(c).rope;
    const std::size_t N = c.tokens();
    T* dq = dout<Reg::q>(io);  // rotated back in place: d(new q) is not needed afterwards
    T* dk = dout<Reg::k>(io);
    ops::cpu::rope_backward(dq, dq, c.batch(), c.seq(), A::heads, A::head_dim, rope);
    ops::cpu::rope_backward(dk, dk, c.batch(), c.seq(), A::kv_heads, A::head_dim, rope);
    ops::cpu::rmsnorm_backward(dq, s.qn, s.rstd_q, N * A::heads, A::head_dim, din<Reg::q>(io), false);
    ops::cpu::rmsnorm_backward(dk, s.kn, s.rstd_k, N * A::kv_heads, A::head_dim, din<Reg::k>(io), false);
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/nn/qkv_product.hpp"
#include "pgolf/ops/cuda/rope.cuh"

namespace pgolf {

// QkvProduct then QkNormRope, fused: one product against the adjacent c_q | c_k | c_v (a [dim +
// 2 kv_dim, dim] matrix in the device layout) into a packed qkv [tokens, heads + 2 kv_heads slots],
// then one kernel that RMS-normalises and rotates the q and k slots and lays q, k, v out head-major
// for attention. Neither component runs alone on the GPU.
template <>
struct Fused<Cuda, QkvProduct, QkNormRope> {
  static constexpr bool available = true;
  static constexpr bool fused_backward = true;
  using bf16 = Cuda::bf16;
  template <class A>
  static constexpr int kQkv = A::dim + 2 * A::kv_dim;

  template <class A>
  struct Resources {
    cuda::DeviceBuffer<float> cos, sin;
    cuda::DeviceBuffer<bf16> dqkv;  // the backward's packed gradient
    explicit Resources(const Shape& sh) : dqkv(sh.tokens() * std::size_t(kQkv<A>)) {
      const ops::cpu::RopeTable<float> rt(sh.seq, A::rope_dims, rope_base_at<A>(sh.seq));
      cos = cuda::DeviceBuffer<float>(rt.cos.size());
      sin = cuda::DeviceBuffer<float>(rt.sin.size());
      if (!rt.cos.empty()) cos.upload(rt.cos), sin.upload(rt.sin);
    }
  };
  struct Saved {
    const bf16* n = nullptr;
    bf16 *qkv = nullptr, *q = nullptr, *k = nullptr, *v = nullptr;
    float *rstd_q = nullptr, *rstd_k = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    const std::size_t N = sh.tokens();
    p.take(s.qkv, N * kQkv<A>), p.take(s.q, N * A::dim), p.take(s.k, N * A::kv_dim), p.take(s.v, N * A::kv_dim);
    p.take(s.rstd_q, N * A::heads), p.take(s.rstd_k, N * A::kv_heads);
  }
  template <class A>
  static ops::cuda::QkvShape shape(const auto& c) {
    return {c.batch(), c.seq(), A::heads, A::kv_heads};
  }
  template <class A>
  static void check_adjacent(auto& c) {
    static_assert(A::head_dim % 32 == 0, "GptSpec head dim (dim / heads) must be a multiple of 32 for the CUDA kernels");
    const auto *wq = weight<QkvProduct, 0>(c), *wk = weight<QkvProduct, 1>(c), *wv = weight<QkvProduct, 2>(c);
    PGOLF_CHECK(wk == wq + std::size_t(A::dim) * A::dim && wv == wk + std::size_t(A::kv_dim) * A::dim,
                "c_q, c_k, c_v must be adjacent in the device layout (one fused qkv product)");
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    check_adjacent<A>(c);
    auto& r = resources<Fused>(c);
    s.n = value<Reg::n>(f);
    Cuda::linear(c.rt().gemm, int(c.tokens()), s.n, weight<QkvProduct, 0>(c), s.qkv, A::dim, kQkv<A>, cuda::DType::bf16);
    ops::cuda::qk_norm_rope_forward<A::head_dim, A::rope_dims>(s.qkv, shape<A>(c), r.cos.data(), r.sin.data(),
                                                               float(A::eps), s.q, s.k, s.v, s.rstd_q, s.rstd_k);
    set_value<Reg::q>(f, s.q), set_value<Reg::k>(f, s.k), set_value<Reg::v>(f, s.v);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    auto& r = resources<Fused>(c);
    ops::cuda::qk_norm_rope_backward<A::head_dim, A::rope_dims>(dout<Reg::q>(io), dout<Reg::k>(io), dout<Reg::v>(io),
                                                                s.qkv, shape<A>(c), r.cos.data(), r.sin.data(),
                                                                s.rstd_q, s.rstd_k, r.dqkv.data());
    Cuda::linear_backward(c.rt().gemm, int(c.tokens()), r.dqkv.data(), s.n, weight<QkvProduct, 0>(c),
                          grad<QkvProduct, 0>(c), din<Reg::n>(io), cuda::DType::f32, A::dim, kQkv<A>,
                          adds<Reg::n, decltype(io)>);
  }
};

}  // namespace pgolf
#endif
