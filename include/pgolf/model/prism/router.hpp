// PRISM's polymorphic router (PRISM.md 2.6) over E experts.
//   m = mean over slots of the tape (reference: per sequence, the entry tape; causal: per position)
//   p_soft = softmax(W [x ; m] + b);  hard = top-k mask;  p_sel = p_soft hard / max(sum p_soft hard, 1e-9)
//   p = (1 - eps) (p_sel + p_soft - sg(p_soft)) + eps p_soft
// Forward value (1 - eps) p_sel + eps p_soft: unselected experts still contribute eps p_soft.
// Backward: d p_soft = (1 - eps) J_sel^T dp + dp (top-1: J_sel = 0, the fully soft gradient).
// Switch load balance: aux = E sum_i f_i P_i, f_i the fraction of tokens whose top-k holds i
// (hard, no gradient), P_i the mean p_soft_i; uniform top-1 routing gives 1. Both means run over
// the whole batch: aux is a loss term and never reaches a logit.
#pragma once

#include <array>
#include <cstdint>
#include <numeric>
#include <vector>

#include "pgolf/model/prism/expert.hpp"
#include "pgolf/ops/cpu/linear.hpp"

namespace pgolf::prism {

// The router's tensors over `experts` experts: gate.weight [E, D + M] (N(0, init_std)), gate.bias [E].
template <PrismSpec S>
constexpr RowList router_rows(int experts) {
  return RowList{}
      .add({.name = "gate.weight", .rows = experts, .cols = S.d_model + S.d_mem, .rank = 2,
            .init = {InitKind::normal, S.init_std}, .group = OptimGroup::muon_matrix})
      .add({.name = "gate.bias", .rows = experts, .cols = 1, .rank = 1, .init = {InitKind::zeros},
            .group = OptimGroup::adam_scalar});
}

template <PrismSpec S, class T, int E>
class Router {
 public:
  static constexpr int D = S.d_model, M = S.d_mem, Sl = S.num_slots, K = S.router_topk < E ? S.router_topk : E;
  static constexpr T kEps = T(S.router_epsilon);

  enum Row : int { kW, kB };  // router_rows

  Router(int batch, int seq) : batch_(batch), seq_(seq) {
    const std::size_t N = std::size_t(batch) * seq;
    rin_.resize(N * (D + M)), ps_.resize(N * E), sg_.resize(N * E), p_.resize(N * E), hard_.resize(N * E), z_.resize(N);
    dl_.resize(N * E), drin_.resize(N * (D + M));
  }

  // Frozen: later forwards keep this forward's top-k masks and stop-gradient values, so the loss
  // is a smooth function whose derivative is the straight-through gradient (finite differences).
  void freeze_decisions(bool on) { frozen_ = on; }

  const T* probs() const { return p_.data(); }            // [N, E], the forward mixing weights
  const std::uint8_t* hard() const { return hard_.data(); }  // [N, E]
  double aux() const { return aux_; }
  const std::array<double, E>& fraction() const { return f_; }   // f_i
  const std::array<double, E>& mean_prob() const { return P_; }  // P_i

  // W, b: the gate's weight [E, D + M] and bias.
  void forward(const T* hx, const T* tape_in, const T* W, const T* b) {
    namespace op = ops::cpu;
    const int N = batch_ * seq_;
    for (int n = 0; n < N; ++n) {
      T* row = rin_.data() + std::size_t(n) * (D + M);
      std::copy(hx + std::size_t(n) * D, hx + std::size_t(n + 1) * D, row);
      const T* tape = tape_in + std::size_t(S.causal() ? n : n / seq_) * Sl * M;
      for (int m = 0; m < M; ++m) {
        T s = 0;
        for (int k = 0; k < Sl; ++k) s += tape[std::size_t(k) * M + m];
        row[D + m] = s / T(Sl);
      }
    }
    op::linear_forward(rin_.data(), W, ps_.data(), N, D + M, E);
    op::bias_forward(ps_.data(), b, N, E);
    f_.fill(0), P_.fill(0);
    for (int n = 0; n < N; ++n) {
      T* ps = ps_.data() + std::size_t(n) * E;
      softmax_row(ps, E);
      std::uint8_t* h = hard_.data() + std::size_t(n) * E;
      T* sg = sg_.data() + std::size_t(n) * E;
      if (!frozen_) {
        // Top-k by value; ties go to the lower index.
        std::array<int, E> order;
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int i, int j) { return ps[i] > ps[j]; });
        for (int i = 0; i < E; ++i) h[i] = 0;
        for (int i = 0; i < K; ++i) h[order[std::size_t(i)]] = 1;
        std::copy(ps, ps + E, sg);
      }
      T sum = 0;
      for (int i = 0; i < E; ++i) sum += h[i] ? ps[i] : T(0);
      z_[std::size_t(n)] = sum;
      const T Z = std::max(sum, T(1e-9));
      T* p = p_.data() + std::size_t(n) * E;
      for (int i = 0; i < E; ++i) {
        // (1 - eps) (p_sel + p_soft - sg(p_soft)) + eps p_soft; sg(p_soft) == p_soft unless frozen.
        p[i] = (T(1) - kEps) * ((h[i] ? ps[i] / Z : T(0)) + (ps[i] - sg[i])) + kEps * ps[i];
        f_[std::size_t(i)] += double(h[i]) / N;
        P_[std::size_t(i)] += double(ps[i]) / N;
      }
    }
    aux_ = 0;
    for (int i = 0; i < E; ++i) aux_ += E * f_[std::size_t(i)] * P_[std::size_t(i)];
  }

  // dp: d loss / d p [N, E]; lb_grad: d loss / d aux. Accumulates dhx, dtape_in and the gate's grads.
  void backward(const T* dp, double lb_grad, const T* W, T* dW, T* db, T* dhx, T* dtape_in) {
    namespace op = ops::cpu;
    const int N = batch_ * seq_;
    for (int n = 0; n < N; ++n) {
      const T* ps = ps_.data() + std::size_t(n) * E;
      const std::uint8_t* h = hard_.data() + std::size_t(n) * E;
      const T* g = dp + std::size_t(n) * E;
      T* dl = dl_.data() + std::size_t(n) * E;
      const bool clamped = z_[std::size_t(n)] < T(1e-9);
      const T Z = std::max(z_[std::size_t(n)], T(1e-9));
      T dot = 0;
      for (int i = 0; i < E; ++i) dot += h[i] ? g[i] * ps[i] : T(0);
      for (int j = 0; j < E; ++j) {
        T sel = h[j] ? g[j] / Z - (clamped ? T(0) : dot / (Z * Z)) : T(0);
        dl[j] = g[j] + (T(1) - kEps) * sel + T(lb_grad * E * f_[std::size_t(j)] / N);
      }
      softmax_row_backward(ps, dl, E);
    }
    op::linear_backward(dl_.data(), rin_.data(), W, drin_.data(), dW, N, D + M, E, false);
    op::bias_backward(dl_.data(), N, E, db);
    for (int n = 0; n < N; ++n) {
      const T* dr = drin_.data() + std::size_t(n) * (D + M);
      for (int i = 0; i < D; ++i) dhx[std::size_t(n) * D + i] += dr[i];
      T* dt = dtape_in + std::size_t(S.causal() ? n : n / seq_) * Sl * M;
      for (int k = 0; k < Sl; ++k)
        for (int m = 0; m < M; ++m) dt[std::size_t(k) * M + m] += dr[D + m] / T(Sl);
    }
  }

 private:
  int batch_, seq_;
  std::vector<T> rin_, ps_, sg_, p_, z_, dl_, drin_;
  std::vector<std::uint8_t> hard_;
  std::array<double, E> f_{}, P_{};
  double aux_ = 0;
  bool frozen_ = false;
};

}  // namespace pgolf::prism
