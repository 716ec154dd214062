// PRISM's symbolic expert (PRISM.md 2.4): a library of six primitives chosen per token.
//   p_soft = softmax(W_sel x + b_sel);  p = onehot(argmax p_soft) + p_soft - sg(p_soft)
//   a1, a2 (, a3) = W_arg x + b_arg;     out = W_out sum_j p_j prim_j(x, a1, a2)
// The forward value of p is exactly one-hot; its gradient is p_soft's (straight-through), so
// d p_soft_j = <d sum, prim_j> needs every primitive, and only the chosen one passes gradient to x
// and the arguments. The reference computes a third argument head a3 and never uses it (its D*D+D
// weights are dead); the causal behaviour drops it.
#pragma once

#include <array>
#include <vector>

#include "pgolf/model/prism/expert.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/symbolic_primitives.hpp"

namespace pgolf::prism {

template <PrismSpec S, class T>
class SymbolicExpert {
 public:
  static constexpr ExpertKind kind = ExpertKind::symbolic;
  static constexpr int D = S.d_model, P6 = ops::cpu::kSymbolicPrimitives, A = S.arg_heads();

  enum Row : int { kSelW, kSelB, kArgW, kArgB, kOut };
  static constexpr RowList rows(int /*block*/) {
    const Init normal{InitKind::normal, S.init_std}, zeros{InitKind::zeros};
    const auto M = OptimGroup::muon_matrix, Sc = OptimGroup::adam_scalar;
    return RowList{}
        .add({.name = "lib.select_proj.weight", .rows = P6, .cols = D, .rank = 2, .init = normal, .group = M})
        .add({.name = "lib.select_proj.bias", .rows = P6, .cols = 1, .rank = 1, .init = zeros, .group = Sc})
        .add({.name = "lib.arg_proj.weight", .rows = A * D, .cols = D, .rank = 2, .init = normal, .group = M})
        .add({.name = "lib.arg_proj.bias", .rows = A * D, .cols = 1, .rank = 1, .init = zeros, .group = Sc})
        .add({.name = "lib.out_proj.weight", .rows = D, .cols = D, .rank = 2, .init = normal, .group = M});
  }

  SymbolicExpert(int batch, int seq, int /*block*/) {
    const std::size_t N = std::size_t(batch) * seq;
    p_.resize(N * P6), sg_.resize(N * P6), choice_.resize(N), args_.resize(N * A * D), prims_.resize(N * P6 * D), ws_.resize(N * D);
    dy_.resize(N * P6 * D), dws_.resize(N * D), dargs_.resize(N * A * D), dx_.resize(N * D), dp_.resize(N * P6);
  }

  void forward(const ExpertIo<T>& io, Tensors<const T> P, T* out) {
    namespace op = ops::cpu;
    const int N = int(io.tokens());
    op::linear_forward(io.hx, w_sel(P), p_.data(), N, D, P6);
    op::bias_forward(p_.data(), b_sel(P), N, P6);
    op::linear_forward(io.hx, w_arg(P), args_.data(), N, D, A * D);
    op::bias_forward(args_.data(), b_arg(P), N, A * D);
    double ent = 0;
#pragma omp parallel for schedule(static) reduction(+ : ent)
    for (int n = 0; n < N; ++n) {
      T* p = p_.data() + std::size_t(n) * P6;
      softmax_row(p, P6);
      ent += double(entropy_row(p, P6));
      T* sg = sg_.data() + std::size_t(n) * P6;
      if (!frozen_) {
        choice_[std::size_t(n)] = int(std::max_element(p, p + P6) - p);
        std::copy(p, p + P6, sg);
      }
      const T* a = args_.data() + std::size_t(n) * A * D;
      T* y = prims_.data() + std::size_t(n) * P6 * D;
      op::symbolic_primitives_forward(io.hx + std::size_t(n) * D, a, a + D, D, y);
      // p_j = onehot_j + p_soft_j - sg(p_soft)_j: exactly one-hot unless the decisions are frozen
      // and the weights moved (gradient checks).
      T* ws = ws_.data() + std::size_t(n) * D;
      std::fill(ws, ws + D, T(0));
      for (int j = 0; j < P6; ++j) {
        const T w = (j == choice_[std::size_t(n)] ? T(1) : T(0)) + (p[j] - sg[j]);
        if (w != T(0))
          for (int i = 0; i < D; ++i) ws[i] += w * y[std::size_t(j) * D + i];
      }
    }
    entropy_ = ent / double(N);
    op::linear_forward(ws_.data(), w_out(P), out, N, D, D);
  }

  void backward(const ExpertIo<T>& io, Tensors<const T> P, Tensors<T> G, const T* dout, T* dhx, T* /*dtape_in*/) {
    namespace op = ops::cpu;
    const int N = int(io.tokens());
    op::linear_backward(dout, ws_.data(), w_out(P), dws_.data(), w_out(G), N, D, D, false);
    std::fill(dargs_.begin(), dargs_.end(), T(0));
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const T* dw = dws_.data() + std::size_t(n) * D;
      const T* y = prims_.data() + std::size_t(n) * P6 * D;
      T* dp = dp_.data() + std::size_t(n) * P6;
      for (int j = 0; j < P6; ++j) {
        T s = 0;
        for (int i = 0; i < D; ++i) s += dw[i] * y[std::size_t(j) * D + i];
        dp[j] = s;
      }
      softmax_row_backward(p_.data() + std::size_t(n) * P6, dp, P6);
      // Only the chosen primitive has forward weight 1; the others pass no gradient.
      T* dy = dy_.data() + std::size_t(n) * P6 * D;
      std::fill(dy, dy + std::size_t(P6) * D, T(0));
      std::copy(dw, dw + D, dy + std::size_t(choice_[std::size_t(n)]) * D);
      const T* a = args_.data() + std::size_t(n) * A * D;
      T* da = dargs_.data() + std::size_t(n) * A * D;
      op::symbolic_primitives_backward(dy, io.hx + std::size_t(n) * D, a, a + D, D, dx_.data() + std::size_t(n) * D,
                                       da, da + D);
    }
    for (std::size_t i = 0; i < dx_.size(); ++i) dhx[i] += dx_[i];
    op::linear_backward(dp_.data(), io.hx, w_sel(P), dhx, w_sel(G), N, D, P6, true);
    op::bias_backward(dp_.data(), N, P6, b_sel(G));
    op::linear_backward(dargs_.data(), io.hx, w_arg(P), dhx, w_arg(G), N, D, A * D, true);
    op::bias_backward(dargs_.data(), N, A * D, b_arg(G));
  }

  // Frozen: later forwards keep this forward's choices and stop-gradient values, so the loss is a
  // smooth function whose derivative is the straight-through gradient (for finite differences).
  void freeze_decisions(bool on) { frozen_ = on; }

  // Mean entropy of the selection (reported; its loss weight is 0 in the reference).
  double selection_entropy() const { return entropy_; }
  // Fraction of tokens that chose each primitive in the last forward.
  std::array<double, P6> primitive_use() const {
    std::array<double, P6> f{};
    for (int c : choice_) f[std::size_t(c)] += 1.0 / double(choice_.size());
    return f;
  }

 private:
  template <class X> static X* w_sel(Tensors<X> p) { return p[kSelW]; }
  template <class X> static X* b_sel(Tensors<X> p) { return p[kSelB]; }
  template <class X> static X* w_arg(Tensors<X> p) { return p[kArgW]; }
  template <class X> static X* b_arg(Tensors<X> p) { return p[kArgB]; }
  template <class X> static X* w_out(Tensors<X> p) { return p[kOut]; }
  std::vector<T> p_, sg_, args_, prims_, dy_, ws_, dws_, dargs_, dx_, dp_;
  std::vector<int> choice_;
  double entropy_ = 0;
  bool frozen_ = false;
};

}  // namespace pgolf::prism
