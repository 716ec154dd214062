// PRISM's neural expert (PRISM.md 2.5): SwiGLU, out = W_down(silu(W_gate x) * (W_up x)), no biases.
#pragma once

#include <vector>

#include "pgolf/model/prism/expert.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/swiglu.hpp"

namespace pgolf::prism {

template <PrismSpec S, class T>
class NeuralExpert {
 public:
  static constexpr ExpertKind kind = ExpertKind::neural;
  static constexpr int D = S.d_model, H = S.hidden();

  enum Row : int { kGate, kUp, kDown };
  static constexpr RowList rows(int /*block*/) {
    const Init init{InitKind::normal, S.init_std};
    const auto M = OptimGroup::muon_matrix;
    return RowList{}
        .add({.name = "w_gate.weight", .rows = H, .cols = D, .rank = 2, .init = init, .group = M})
        .add({.name = "w_up.weight", .rows = H, .cols = D, .rank = 2, .init = init, .group = M})
        .add({.name = "w_down.weight", .rows = D, .cols = H, .rank = 2, .init = init, .group = M});
  }

  NeuralExpert(int batch, int seq, int /*block*/) {
    const std::size_t N = std::size_t(batch) * seq;
    a_.resize(N * H), b_.resize(N * H), s_.resize(N * H), ds_.resize(N * H);
  }

  // P, G: this expert's tensors in the parameter / gradient buffer.
  void forward(const ExpertIo<T>& io, Tensors<const T> P, T* out) {
    namespace op = ops::cpu;
    const int N = int(io.tokens());
    op::linear_forward(io.hx, w_gate(P), a_.data(), N, D, H);
    op::linear_forward(io.hx, w_up(P), b_.data(), N, D, H);
    op::swiglu_forward(a_.data(), b_.data(), std::size_t(N) * H, s_.data());
    op::linear_forward(s_.data(), w_down(P), out, N, H, D);
  }

  // dout: d loss / d out. dhx is accumulated.
  void backward(const ExpertIo<T>& io, Tensors<const T> P, Tensors<T> G, const T* dout, T* dhx, T* /*dtape_in*/) {
    namespace op = ops::cpu;
    const int N = int(io.tokens());
    op::linear_backward(dout, s_.data(), w_down(P), ds_.data(), w_down(G), N, H, D, false);
    // da, db overwrite the saved products (not needed after this).
    op::swiglu_backward(ds_.data(), a_.data(), b_.data(), std::size_t(N) * H, a_.data(), b_.data());
    op::linear_backward(a_.data(), io.hx, w_gate(P), dhx, w_gate(G), N, D, H, true);
    op::linear_backward(b_.data(), io.hx, w_up(P), dhx, w_up(G), N, D, H, true);
  }

 private:
  template <class X> static X* w_gate(Tensors<X> p) { return p[kGate]; }
  template <class X> static X* w_up(Tensors<X> p) { return p[kUp]; }
  template <class X> static X* w_down(Tensors<X> p) { return p[kDown]; }
  std::vector<T> a_, b_, s_, ds_;
};

}  // namespace pgolf::prism
