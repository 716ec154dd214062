// AsymSoftcap: the strongest records' AsymLogit (TECHNIQUES.md 13), separate caps for positive and
// negative logits in place of the symmetric softcap:
//   h := sp tanh(z / sp)  where z >= 0,   sn tanh(z / sn)  where z < 0
// softcap_pos = sp, softcap_neg = sn: [1] each, init GptSpec.head.softcap, scalar Adam, control.
// Here both caps learn. (In the record's code they received no gradient: its training loss used the
// scalar cap, so sp = sn = 30 throughout — /work/notes/records_stack.md section 4; ours are trained.)
// Backward, u = z / c with c the cap of z's sign:
//   dz = dy (1 - tanh^2 u);   dc += sum over the logits of that sign of dy (tanh u - u (1 - tanh^2 u)).
// CPU: this component, then CrossEntropy unfused. CUDA: Fused<Cuda, AsymSoftcap, CrossEntropy>, one
// pass over each row each way as the symmetric softcap's (ops/cuda/asym_softcap.cuh).
//
// Spec: GptSpec.head.asym_softcap.
#pragma once

#include <cmath>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/head.hpp"

namespace pgolf {

struct AsymSoftcap {
  static constexpr Regs reads = regs<Reg::h>, writes = regs<Reg::h>;
  template <class A>
  static constexpr int width(Reg) { return A::vocab; }
  template <class A>
  static constexpr RowList rows() {
    RowList r;
    r.add({.name = "softcap_pos", .rows = 1, .init = {InitKind::constant, A::softcap}, .group = OptimGroup::adam_scalar,
           .control = true, .scope = Scope::global});
    r.add({.name = "softcap_neg", .rows = 1, .init = {InitKind::constant, A::softcap}, .group = OptimGroup::adam_scalar,
           .control = true, .scope = Scope::global});
    return r;
  }
};

template <class T>
struct Impl<Cpu<T>, AsymSoftcap> {
  struct Saved {
    const T* z = nullptr;
    T* y = nullptr;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) { p.take(s.y, sh.tokens() * A::vocab); }
  static void forward(auto& c, Saved& s, Flow<Cpu<T>>& f) {
    using A = arch_of<decltype(c)>;
    const T sp = param<AsymSoftcap, 0>(c)[0], sn = param<AsymSoftcap, 1>(c)[0];
    s.z = value<Reg::h>(f);
    for (std::size_t e = 0; e < c.tokens() * A::vocab; ++e) {
      const T cap = s.z[e] >= T(0) ? sp : sn;
      s.y[e] = cap * std::tanh(s.z[e] / cap);
    }
    set_value<Reg::h>(f, s.y);
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    const T sp = param<AsymSoftcap, 0>(c)[0], sn = param<AsymSoftcap, 1>(c)[0];
    const T* dy = dout<Reg::h>(io);
    T* dz = din<Reg::h>(io);
    T dsp = 0, dsn = 0;
    for (std::size_t e = 0; e < c.tokens() * A::vocab; ++e) {
      const bool pos = s.z[e] >= T(0);
      const T u = s.z[e] / (pos ? sp : sn), th = std::tanh(u), sech2 = T(1) - th * th;
      (pos ? dsp : dsn) += dy[e] * (th - u * sech2);
      dz[e] = dy[e] * sech2;
    }
    grad<AsymSoftcap, 0>(c)[0] += dsp;
    grad<AsymSoftcap, 1>(c)[0] += dsn;
  }
};

}  // namespace pgolf

#ifdef __CUDACC__
#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/ops/cuda/asym_softcap.cuh"
#include "pgolf/ops/cuda/cross_entropy.cuh"

namespace pgolf {

// The asymmetric softcap and cross-entropy in one pass over each row each way, the caps read on the
// device; the caps' gradients are per-row partials summed in a fixed order.
template <>
struct Fused<Cuda, AsymSoftcap, CrossEntropy> {
  static constexpr bool available = true;
  static constexpr bool fused_backward = true;
  using bf16 = Cuda::bf16;
  struct Saved {
    const bf16* logits = nullptr;
    float *row_loss = nullptr, *lse = nullptr, *part = nullptr;  // part: [2, tokens] cap-gradient partials
    double* sum = nullptr;
    mutable std::vector<float> host;
    mutable bool fresh = false;
  };
  template <class A>
  static void plan(ArenaPlan& p, Saved& s, const Shape& sh) {
    static_assert(A::vocab % 256 == 0, "GptSpec.vocab must be a multiple of 256 for the CUDA kernels");
    p.take(s.row_loss, sh.tokens()), p.take(s.lse, sh.tokens()), p.take(s.part, 2 * sh.tokens()), p.take(s.sum, 1);
  }
  static void forward(auto& c, Saved& s, Flow<Cuda>& f) {
    using A = arch_of<decltype(c)>;
    s.logits = value<Reg::h>(f);
    s.fresh = false;
    ops::cuda::asym_softcap_ce_forward<A::vocab>(s.logits, c.targets(), c.tokens(), param<AsymSoftcap, 0>(c),
                                                 param<AsymSoftcap, 1>(c), s.row_loss, s.lse);
    ops::cuda::ordered_sum(s.row_loss, c.tokens(), s.sum);
    double sum = 0;
    PGOLF_CUDA_CHECK(cudaMemcpy(&sum, s.sum, sizeof(double), cudaMemcpyDeviceToHost));
    c.loss = sum / double(std::max<std::size_t>(c.rt().scored(), 1));
  }
  static void backward(auto& c, Saved& s, auto& io) {
    using A = arch_of<decltype(c)>;
    const double scale = c.grad_scale / double(std::max<std::size_t>(c.rt().scored(), 1));
    ops::cuda::asym_softcap_ce_backward<A::vocab>(s.logits, c.targets(), s.lse, c.tokens(), param<AsymSoftcap, 0>(c),
                                                  param<AsymSoftcap, 1>(c), float(scale), din<Reg::h>(io), s.part);
    ops::cuda::asym_cap_grads(s.part, c.tokens(), grad<AsymSoftcap, 0>(c), grad<AsymSoftcap, 1>(c));
  }
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
