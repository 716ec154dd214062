// The output head. TiedHead<Embedding>: h := n E^T with the token embedding's table (its gradient
// adds to the embedding's); an untied head is a Product with its own lm_head tensor. Softcap:
// h := cap * tanh(h / cap). CrossEntropy: the mean loss over scored positions (target >= 0; a
// target < 0 is not scored), per-position losses kept for evaluation.
#pragma once

#include <algorithm>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/cross_entropy.hpp"
#include "pgolf/ops/cpu/distill.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/softcap.hpp"

namespace pgolf {

template <class Embedding>
struct TiedHead {
  static constexpr Regs reads = regs<Reg::n>, writes = regs<Reg::h>;
  template <class A>
  static constexpr int width(Reg) { return A::vocab; }
};

struct Softcap {
  static constexpr Regs reads = regs<Reg::h>, writes = regs<Reg::h>;
  template <class A>
  static constexpr int width(Reg) { return A::vocab; }
};

struct CrossEntropy {
  static constexpr Regs reads = regs<Reg::h>, writes = 0;
};

template <class T, class Embedding>
struct Impl<Cpu<T>, TiedHead<Embedding>> {
  struct Saved {
    const T* n = nullptr;
    T* logits = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.logits, sh.tokens() * A::vocab); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.n = value<Reg::n>(f);
    ops::cpu::linear_forward(s.n, param<Embedding>(c), s.logits, int(c.tokens()), A::dim, A::vocab);
    set_value<Reg::h>(f, s.logits);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::linear_backward(dout<Reg::h>(io), s.n, param<Embedding>(c), din<Reg::n>(io), grad<Embedding>(c),
                              int(c.tokens()), A::dim, A::vocab, adds<Reg::n, decltype(io)>);
  }
};

template <class T>
struct Impl<Cpu<T>, Softcap> {
  struct Saved {
    T* y = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.y, sh.tokens() * A::vocab); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    ops::cpu::softcap_forward(value<Reg::h>(f), c.tokens() * A::vocab, T(A::softcap), s.y);
    set_value<Reg::h>(f, s.y);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    ops::cpu::softcap_backward(dout<Reg::h>(io), s.y, c.tokens() * A::vocab, T(A::softcap), din<Reg::h>(io));
  }
};

template <class T>
struct Impl<Cpu<T>, CrossEntropy> {
  struct Saved {
    const T* logits = nullptr;
    T* row_loss = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.row_loss, sh.tokens()); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    s.logits = value<Reg::h>(f);
    if (const T* teacher = c.rt().teacher()) {  // self-distillation: row_loss stays the cross-entropy
      c.loss = ops::cpu::distill_forward(s.logits, teacher, c.targets(), c.tokens(), A::vocab, c.rt().distill_options(),
                                         s.row_loss);
      return;
    }
    c.loss = ops::cpu::cross_entropy_forward(s.logits, c.targets(), c.tokens(), A::vocab, s.row_loss);
  }
  // Scaled by grad_scale / scored positions: the gradient of grad_scale * the mean loss.
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    if (const T* teacher = c.rt().teacher()) {
      ops::cpu::distill_backward(s.logits, teacher, c.targets(), c.tokens(), A::vocab, c.rt().distill_options(),
                                 c.grad_scale, din<Reg::h>(io));
      return;
    }
    const std::size_t scored = std::max<std::size_t>(ops::cpu::scored_rows(c.targets(), c.tokens()), 1);
    ops::cpu::cross_entropy_backward(s.logits, c.targets(), c.tokens(), A::vocab, T(c.grad_scale / double(scored)),
                                     din<Reg::h>(io));
  }
  static std::span<const T> row_losses(const Saved& s, std::size_t tokens) { return {s.row_loss, tokens}; }
  static std::span<const T> logits(const Saved& s, std::size_t tokens, int vocab) {
    return {s.logits, tokens * std::size_t(vocab)};
  }
  // What a student distilling from this model reads (LanguageModel::distill_from): the final logits.
  static const T* teacher_logits(const Saved& s) { return s.logits; }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/cross_entropy.cuh"
#include "pgolf/ops/cuda/distill.cuh"

namespace pgolf {

template <class Embedding>
struct Impl<Cuda, TiedHead<Embedding>> {
  using bf16 = Cuda::bf16;
  struct Saved {
    const bf16* n = nullptr;
    bf16* logits = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.logits, sh.tokens() * A::vocab); }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.n = value<Reg::n>(f);
    Cuda::linear(c.rt().gemm, int(c.tokens()), s.n, weight<Embedding>(c), s.logits, A::dim, A::vocab, cuda::DType::bf16);
    set_value<Reg::h>(f, s.logits);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    Cuda::linear_backward(c.rt().gemm, int(c.tokens()), dout<Reg::h>(io), s.n, weight<Embedding>(c), grad<Embedding>(c),
                          din<Reg::n>(io), cuda::DType::f32, A::dim, A::vocab, adds<Reg::n, decltype(io)>);
  }
};

// Softcap and cross-entropy in one pass over each row of logits each way (ops/cuda/cross_entropy.cuh):
// no capped logits are stored. The loss is a fixed-order sum of the row losses over scored positions.
// While the runtime holds a teacher's logits, softcap and the distillation loss instead
// (ops/cuda/distill.cuh); the row losses stay the cross-entropy, as on the CPU.
template <>
struct Fused<Cuda, Softcap, CrossEntropy> {
  static constexpr bool available = true;
  static constexpr bool fused_backward = true;
  using bf16 = Cuda::bf16;
  struct Saved {
    const bf16* logits = nullptr;
    float *row_loss = nullptr, *lse = nullptr;
    float *row_kl = nullptr, *lse3 = nullptr;  // distillation: KL per row; [tokens, 3] log-sum-exps
    double* sum = nullptr;                     // [2]: the cross-entropy's, the KL's
    mutable std::vector<float> host;           // row losses, copied on request
    mutable bool fresh = false;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    static_assert(A::vocab % 256 == 0, "GptSpec.vocab must be a multiple of 256 for the CUDA kernels");
    p.take(s.row_loss, sh.tokens()), p.take(s.lse, sh.tokens()), p.take(s.sum, 2);
    // Planned in every model, distilling or not: 16 bytes a token beside the logits' 2 * vocab.
    p.take(s.row_kl, sh.tokens()), p.take(s.lse3, 3 * sh.tokens());
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.logits = value<Reg::h>(f);
    s.fresh = false;
    const std::size_t scored = std::max<std::size_t>(c.rt().scored(), 1);
    if (const bf16* teacher = c.rt().teacher()) {
      const ops::cpu::DistillOptions& o = c.rt().distill_options();
      ops::cuda::softcap_distill_forward<A::vocab>(s.logits, teacher, c.targets(), c.tokens(), float(A::softcap),
                                                   float(1.0 / o.temperature), s.row_loss, s.row_kl, s.lse3);
      ops::cuda::ordered_sum(s.row_loss, c.tokens(), s.sum);
      ops::cuda::ordered_sum(s.row_kl, c.tokens(), s.sum + 1);
      double sums[2] = {0, 0};
      PGOLF_CUDA_CHECK(cudaMemcpy(sums, s.sum, sizeof(sums), cudaMemcpyDeviceToHost));
      c.loss = ops::cpu::distill_loss(o, sums[0] / double(scored), sums[1], c.rt().scored());
      return;
    }
    ops::cuda::softcap_ce_forward<A::vocab>(s.logits, c.targets(), c.tokens(), float(A::softcap), s.row_loss, s.lse);
    ops::cuda::ordered_sum(s.row_loss, c.tokens(), s.sum);
    double sum = 0;
    PGOLF_CUDA_CHECK(cudaMemcpy(&sum, s.sum, sizeof(double), cudaMemcpyDeviceToHost));
    c.loss = sum / double(scored);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    if (const bf16* teacher = c.rt().teacher()) {
      const ops::cpu::DistillOptions& o = c.rt().distill_options();
      const ops::cpu::DistillScales a = ops::cpu::distill_scales(o, c.rt().scored(), c.grad_scale);
      ops::cuda::softcap_distill_backward<A::vocab>(s.logits, teacher, c.targets(), s.lse3, c.tokens(),
                                                    float(A::softcap), float(1.0 / o.temperature), float(a.ce),
                                                    float(a.kl), din<Reg::h>(io));
      return;
    }
    const double scale = c.grad_scale / double(std::max<std::size_t>(c.rt().scored(), 1));
    ops::cuda::softcap_ce_backward<A::vocab>(s.logits, c.targets(), s.lse, c.tokens(), float(A::softcap), float(scale),
                                             din<Reg::h>(io));
  }
  // A student distilling from this model reads its raw head logits (capped in the student's kernel).
  static const bf16* teacher_logits(const Saved& s) { return s.logits; }
  static std::span<const float> row_losses(const Saved& s, std::size_t tokens) {
    if (!s.fresh) {
      s.host.resize(tokens);
      PGOLF_CUDA_CHECK(cudaMemcpy(s.host.data(), s.row_loss, tokens * sizeof(float), cudaMemcpyDeviceToHost));
      s.fresh = true;
    }
    return s.host;
  }
};

}  // namespace pgolf
#endif
