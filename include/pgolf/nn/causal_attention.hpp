// CausalAttention<Gain>: h := softmax(g_h q k^T / sqrt(head_dim), causal) v with GQA (query head h
// reads KV head h / (heads / kv_heads)). Gain::learned: a per-head gain q_gain [heads] (constant init
// qk_gain_init, control tensor, scalar Adam); otherwise the gain is 1 and there is no tensor. The
// log-sum-exp of each score row is saved and the probabilities are recomputed in the backward.
// d q and d k are overwritten; d v is added to when a later component (XSA) also read v.
// DocBos >= 0: document masking; a token whose id is DocBos begins a new document and no query
// attends to a key before its own document's start (ops/cpu/attention.hpp), so packed documents
// never see each other. The starts are derived from the ids in the forward and saved ([tokens] int32).
#pragma once

#include <cstdint>
#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/attention.hpp"

namespace pgolf {

struct LearnedGain {
  static constexpr bool learned = true;
};
struct UnitGain {
  static constexpr bool learned = false;
};

template <class Gain = LearnedGain, int DocBos = -1>
struct CausalAttention {
  static constexpr bool documents = DocBos >= 0;
  static constexpr Regs reads = regs<Reg::q, Reg::k, Reg::v>, writes = regs<Reg::h>;
  template <class A>
  static constexpr RowList rows() {
    RowList r;
    if constexpr (Gain::learned)
      r.add({.name = "attn.q_gain", .rows = A::heads, .cols = 1, .rank = 1,
             .init = {InitKind::constant, A::qk_gain_init}, .group = OptimGroup::adam_scalar, .control = true,
             .scope = A::scalar_scope});
    return r;
  }
  template <class A>
  static constexpr int width(Reg) { return A::dim; }
};

template <class T, class Gain, int DocBos>
struct Impl<Cpu<T>, CausalAttention<Gain, DocBos>> {
  using C = CausalAttention<Gain, DocBos>;
  template <class A>
  struct Resources {
    std::vector<T> ones, dgain;  // the unit gain and its (unused) gradient
    explicit Resources(const Shape&) : ones(std::size_t(A::heads), T(1)), dgain(std::size_t(A::heads)) {}
  };
  struct Saved {
    const T *q = nullptr, *k = nullptr, *v = nullptr;
    T *y = nullptr, *lse = nullptr;
    std::int32_t* starts = nullptr;  // document starts (DocBos >= 0 only)
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.y, sh.tokens() * A::dim), p.take(s.lse, sh.tokens() * A::heads);
    if constexpr (C::documents) p.take(s.starts, sh.tokens());
  }
  template <class A>
  static ops::cpu::AttentionShape shape(const auto& c, const Saved& s) {
    return {c.batch(), c.seq(), A::heads, A::kv_heads, A::head_dim, s.starts};
  }
  static const T* gain(auto& c) {
    if constexpr (Gain::learned) return param<C>(c);
    else return resources<Impl>(c).ones.data();
  }
  static T* gain_grad(auto& c) {
    if constexpr (Gain::learned) return grad<C>(c);
    else return resources<Impl>(c).dgain.data();
  }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.q = value<Reg::q>(f), s.k = value<Reg::k>(f), s.v = value<Reg::v>(f);
    if constexpr (C::documents) ops::cpu::document_starts(c.ids(), c.batch(), c.seq(), DocBos, s.starts);
    ops::cpu::attention_forward(s.q, s.k, s.v, gain(c), shape<A>(c, s), s.y, s.lse);
    set_value<Reg::h>(f, s.y);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    static_assert(!adds<Reg::q, decltype(io)> && !adds<Reg::k, decltype(io)>, "CausalAttention overwrites d q, d k");
    ops::cpu::attention_backward(dout<Reg::h>(io), s.q, s.k, s.v, gain(c), s.y, s.lse, shape<A>(c, s),
                                 din<Reg::q>(io), din<Reg::k>(io), din<Reg::v>(io), gain_grad(c),
                                 adds<Reg::v, decltype(io)>);
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include <optional>

#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/attention_path.hpp"
#include "pgolf/ops/cuda/attention.cuh"
#include "pgolf/ops/cuda/flash_attention.cuh"

namespace pgolf {

// Two implementations with the same calls, chosen at run time by PGOLF_ATTENTION
// (ops/attention_path.hpp): "gemm" (default), strided-batched cuBLASLt products over (batch, KV head)
// pairs with masked softmax kernels (ops/cuda/attention.cuh); "flash", the fused kernel that keeps
// scores on chip (ops/cuda/flash_attention.cuh; checked on an H200, no faster than gemm yet; its
// backward deterministic or with atomics, --deterministic); "flash-mma", the same on its kernels
// on registers (FlashKernels::mma; not yet run on a GPU). Both take the gain gradient
// from fp32 scores. The learned gain only: a unit-gain attention has no CUDA implementation.
template <int DocBos>
struct Impl<Cuda, CausalAttention<LearnedGain, DocBos>> {
  using C = CausalAttention<LearnedGain, DocBos>;
  using bf16 = Cuda::bf16;
  template <class A>
  struct Resources {
    std::optional<ops::cuda::Attention<A::head_dim>> gemm;  // exactly one of the two is set
    std::optional<ops::cuda::FlashAttention<A::head_dim>> flash;
    Resources(const Shape& sh, Cuda::Runtime& rt) {
      const ops::cuda::AttentionDims d{sh.batch, sh.seq, A::heads, A::kv_heads, A::head_dim};
      // The flash backward's mode: TrainConfig::deterministic, set by the trainer before it builds a model.
      const AttentionPath path = attention_path_from_env();
      if (path == AttentionPath::gemm) {
        gemm.emplace(rt.gemm, d);  // only this path allocates the score workspace
      } else {
        flash.emplace(d, attention_deterministic());
        if (path == AttentionPath::flash_mma) flash->set_kernels(ops::cuda::FlashKernels::mma);
      }
    }
    template <class F>
    void with(F&& f) {
      if (flash) f(*flash);
      else f(*gemm);
    }
  };
  struct Saved {
    const bf16 *q = nullptr, *k = nullptr, *v = nullptr;
    bf16* y = nullptr;
    float* lse = nullptr;
    std::int32_t* starts = nullptr;  // document starts (DocBos >= 0 only), else stays null
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    p.take(s.y, sh.tokens() * A::dim), p.take(s.lse, sh.tokens() * A::heads);
    if constexpr (C::documents) p.take(s.starts, sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    s.q = value<Reg::q>(f), s.k = value<Reg::k>(f), s.v = value<Reg::v>(f);
    if constexpr (C::documents) ops::cuda::document_starts(c.ids(), c.batch(), c.seq(), DocBos, s.starts);
    resources<Impl>(c).with([&](auto& attn) {
      attn.set_doc_starts(s.starts);
      attn.forward(s.q, s.k, s.v, param<C>(c), s.y, s.lse);
    });
    set_value<Reg::h>(f, s.y);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    static_assert(!adds<Reg::q, decltype(io)> && !adds<Reg::k, decltype(io)>, "CausalAttention overwrites d q, d k");
    resources<Impl>(c).with([&](auto& attn) {
      attn.set_doc_starts(s.starts);  // this layer's starts: a later layer's forward may have set its own
      attn.backward(dout<Reg::h>(io), s.q, s.k, s.v, param<C>(c), s.lse, din<Reg::q>(io), din<Reg::k>(io),
                    din<Reg::v>(io), grad<C>(c), nullptr, adds<Reg::v, decltype(io)>);
    });
  }
};

}  // namespace pgolf
#endif
