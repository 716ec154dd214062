// One PRISM block (PRISM.md 2.7):
//   x1 = x + MRB(RMSNorm_mrb(x))
//   h  = RMSNorm_exp(x1);  out = sum_e p_e(h, tape) expert_e(h, tape);  x' = x1 + out
// and the tape it passes on, (1 - frac) tape + frac tape_mem: in the reference frac is the share of
// all tokens of the batch routed to memory (one number for the batch); causal, frac_t is the share
// of positions u <= t of the same sequence routed to memory (per position, per sequence). Without a
// memory expert the tape passes through.
//
// The experts are a Boost.Hana tuple built from the mix at compile time, so the loops over them
// unroll and each expert's kind is a constant.
#pragma once

#include <boost/hana.hpp>
#include <utility>
#include <vector>

#include "pgolf/model/prism/memory_expert.hpp"
#include "pgolf/model/prism/neural_expert.hpp"
#include "pgolf/model/prism/router.hpp"
#include "pgolf/model/prism/symbolic_expert.hpp"
#include "pgolf/ops/cpu/multi_rate_bus.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"

namespace pgolf::prism {

namespace hana = boost::hana;

template <PrismSpec S, class T, ExpertKind K>
using ExpertOf = std::conditional_t<K == ExpertKind::neural, NeuralExpert<S, T>,
                                    std::conditional_t<K == ExpertKind::memory, MemoryExpert<S, T>, SymbolicExpert<S, T>>>;

// The experts of a mix as a Hana tuple of types, in router order.
template <PrismSpec S, class T, ExpertMix Mix>
constexpr auto expert_types() {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return hana::tuple_t<ExpertOf<S, T, Mix.kinds[I]>...>;
  }(std::make_index_sequence<std::size_t(Mix.count)>{});
}

// The block's own tensors: the MRB with its norm, and the experts' norm (PRISM.md 2.7).
template <PrismSpec S>
struct BlockCore {
  enum Row : int { kMrbNorm, kInW, kInB, kGateW, kGateB, kOutW, kOutB, kExpNorm };
  static constexpr RowList rows(int /*block*/) {
    const int D = S.d_model, K = S.num_rates;
    const Init normal{InitKind::normal, S.init_std}, zeros{InitKind::zeros}, ones{InitKind::ones};
    const auto Mx = OptimGroup::muon_matrix, Sc = OptimGroup::adam_scalar;
    return RowList{}
        .add({.name = "norm_mrb.weight", .rows = D, .cols = 1, .rank = 1, .init = ones, .group = Sc, .control = true})
        .add({.name = "mrb.in_proj.weight", .rows = D, .cols = D, .rank = 2, .init = normal, .group = Mx})
        .add({.name = "mrb.in_proj.bias", .rows = D, .cols = 1, .rank = 1, .init = zeros, .group = Sc})
        .add({.name = "mrb.gate_proj.weight", .rows = K, .cols = D, .rank = 2, .init = normal, .group = Mx})
        .add({.name = "mrb.gate_proj.bias", .rows = K, .cols = 1, .rank = 1, .init = zeros, .group = Sc})
        .add({.name = "mrb.out_proj.weight", .rows = D, .cols = D, .rank = 2, .init = normal, .group = Mx})
        .add({.name = "mrb.out_proj.bias", .rows = D, .cols = 1, .rank = 1, .init = zeros, .group = Sc})
        .add({.name = "norm_exp.weight", .rows = D, .cols = 1, .rank = 1, .init = ones, .group = Sc, .control = true});
  }
};

// Where one block's modules find their tensors: each module's rows, by the module's own row indices.
struct BlockLayout {
  ModuleRows core, router;
  std::array<ModuleRows, 3> expert{};  // by router index
};

template <PrismSpec S, class T, ExpertMix Mix>
class Block {
 public:
  static constexpr int D = S.d_model, K = S.num_rates, M = S.d_mem, Sl = S.num_slots, E = Mix.count;
  static constexpr ExpertMix kMix = Mix;
  static constexpr bool kMemory = Mix.has(ExpertKind::memory);
  static constexpr int kMemoryIndex = [] {
    for (int i = 0; i < Mix.count; ++i)
      if (Mix.kinds[std::size_t(i)] == ExpertKind::memory) return i;
    return -1;
  }();
  using Experts = typename decltype(hana::unpack(expert_types<S, T, Mix>(), hana::template_<hana::tuple>))::type;

  // rows: where the block's modules find their tensors in the parameter buffer.
  Block(int batch, int seq, int block, const BlockLayout& rows)
      : batch_(batch), seq_(seq), rows_(rows), router_(batch, seq),
        experts_(hana::transform(expert_types<S, T, Mix>(), [&](auto t) {
          return typename decltype(t)::type(batch, seq, block);
        })),
        gamma_(ops::cpu::mrb_decays(K, S.delta0, S.delta_max)) {
    const std::size_t N = tokens();
    for (auto* v : {&y1_, &n1w_, &h_, &u_, &y2_, &hx_, &dhx_, &dx1_, &scratch_, &dh_})
      v->resize(N * D);
    for (auto* v : {&rstd1_, &rstd2_}) v->resize(N);
    g_.resize(N * K), dg_.resize(N * K), dp_.resize(N * E), outs_.resize(std::size_t(E) * N * D),
        dout_e_.resize(N * D);
    if constexpr (kMemory) dtape_mid_.resize((S.causal() ? N : std::size_t(batch)) * Sl * M);
  }

  void freeze_decisions(bool on) {
    router_.freeze_decisions(on);
    hana::for_each(experts_, [&](auto& e) {
      if constexpr (requires { e.freeze_decisions(on); }) e.freeze_decisions(on);
    });
  }

  std::size_t tokens() const { return std::size_t(batch_) * seq_; }
  const Router<S, T, E>& router() const { return router_; }
  const Experts& experts() const { return experts_; }
  std::span<const T> mrb_gates() const { return g_; }  // [N, K]

  // P: the parameter buffer. x_out may not alias x_in. tape_out receives the tape passed on.
  void forward(const T* P, const T* x_in, T* x_out, const T* tape_in, T* tape_out) {
    namespace op = ops::cpu;
    const std::size_t N = tokens();
    const int n = int(N);
    const T eps = T(S.norm_eps);
    const op::MrbShape shape{batch_, seq_, D, K};
    op::rmsnorm_weighted_forward(x_in, core(P)[C::kMrbNorm], N, D, eps, y1_.data(), rstd1_.data(), n1w_.data());
    op::linear_forward(n1w_.data(), core(P)[C::kInW], scratch_.data(), n, D, D);
    op::bias_forward(scratch_.data(), core(P)[C::kInB], n, D);
    op::mrb_scan_forward(scratch_.data(), shape, gamma_, h_.data());
    op::linear_forward(n1w_.data(), core(P)[C::kGateW], g_.data(), n, D, K);
    op::bias_forward(g_.data(), core(P)[C::kGateB], n, K);
    for (T& g : g_) g = op::sigmoid(g);
    op::mrb_gate_forward(h_.data(), g_.data(), shape, u_.data());
    op::linear_forward(u_.data(), core(P)[C::kOutW], x_out, n, D, D);
    op::bias_forward(x_out, core(P)[C::kOutB], n, D);
    for (std::size_t i = 0; i < N * D; ++i) x_out[i] += x_in[i];  // x1, kept in x_out
    op::rmsnorm_weighted_forward(x_out, core(P)[C::kExpNorm], N, D, eps, y2_.data(), rstd2_.data(), hx_.data());

    router_.forward(hx_.data(), tape_in, router(P)[R::kW], router(P)[R::kB]);
    const ExpertIo<T> io = this->io(tape_in);
    hana::for_each(hana::make_range(hana::int_c<0>, hana::int_c<E>), [&](auto i) {
      hana::at(experts_, i).forward(io, expert(P, i), outs_.data() + std::size_t(i) * N * D);
    });
    const T* p = router_.probs();
    for (std::size_t t = 0; t < N; ++t)
      for (int e = 0; e < E; ++e) {
        const T pe = p[t * E + std::size_t(e)];
        const T* o = outs_.data() + (std::size_t(e) * N + t) * D;
        for (int i = 0; i < D; ++i) x_out[t * D + i] += pe * o[i];
      }

    const std::size_t tape = tape_size();
    if constexpr (kMemory) {
      const T* mid = memory().tape_out();
      if constexpr (S.causal()) {
        frac_pos_.resize(N);
        const std::size_t SM = std::size_t(Sl) * M;
        for (int b = 0; b < batch_; ++b) {
          int routed = 0;
          for (int t = 0; t < seq_; ++t) {
            const std::size_t n = std::size_t(b) * seq_ + t;
            routed += router_.hard()[n * E + kMemoryIndex];
            const T f = frac_pos_[n] = T(routed) / T(t + 1);
            for (std::size_t j = n * SM; j < (n + 1) * SM; ++j) tape_out[j] = (T(1) - f) * tape_in[j] + f * mid[j];
          }
        }
      } else {
        frac_ = T(router_.fraction()[kMemoryIndex]);
        for (std::size_t j = 0; j < tape; ++j) tape_out[j] = (T(1) - frac_) * tape_in[j] + frac_ * mid[j];
      }
    } else {
      std::copy(tape_in, tape_in + tape, tape_out);
    }
  }

  // dx: d loss / d x_out on entry, d loss / d x_in on return. dtape_out: d loss / d tape_out;
  // dtape_in receives d loss / d tape_in (overwritten). lb_grad, entropy_grad: d loss / d this block's
  // load-balance term and read entropy.
  void backward(const T* P, T* G, T* dx, const T* tape_in, const T* dtape_out, T* dtape_in, double lb_grad,
                double entropy_grad) {
    namespace op = ops::cpu;
    const std::size_t N = tokens();
    const int n = int(N);
    const std::size_t tape = tape_size();
    const op::MrbShape shape{batch_, seq_, D, K};
    if constexpr (kMemory) {
      if constexpr (S.causal()) {
        const std::size_t SM = std::size_t(Sl) * M;
        for (std::size_t j = 0; j < tape; ++j) {
          const T f = frac_pos_[j / SM];
          dtape_in[j] = (T(1) - f) * dtape_out[j];
          dtape_mid_[j] = f * dtape_out[j];
        }
      } else {
        for (std::size_t j = 0; j < tape; ++j) {
          dtape_in[j] = (T(1) - frac_) * dtape_out[j];
          dtape_mid_[j] = frac_ * dtape_out[j];
        }
      }
      memory().set_tape_grad(dtape_mid_.data());
      memory().set_entropy_grad(entropy_grad);
    } else {
      std::copy(dtape_out, dtape_out + tape, dtape_in);
    }
    // Mixture: d p_e = <dx, o_e>, d o_e = p_e dx.
    const T* p = router_.probs();
    for (std::size_t t = 0; t < N; ++t)
      for (int e = 0; e < E; ++e) {
        const T* o = outs_.data() + (std::size_t(e) * N + t) * D;
        T s = 0;
        for (int i = 0; i < D; ++i) s += dx[t * D + i] * o[i];
        dp_[t * E + std::size_t(e)] = s;
      }
    std::fill(dhx_.begin(), dhx_.end(), T(0));
    const ExpertIo<T> io = this->io(tape_in);
    hana::for_each(hana::make_range(hana::int_c<0>, hana::int_c<E>), [&](auto i) {
      for (std::size_t t = 0; t < N; ++t) {
        const T pe = p[t * E + std::size_t(i)];
        for (int j = 0; j < D; ++j) dout_e_[t * D + j] = pe * dx[t * D + j];
      }
      hana::at(experts_, i).backward(io, expert(P, i), expert(G, i), dout_e_.data(),
                                     dhx_.data(), dtape_in);
    });
    router_.backward(dp_.data(), lb_grad, router(P)[R::kW], router(G)[R::kW], router(G)[R::kB],
                     dhx_.data(), dtape_in);
    // dx1 = dx + norm_exp's backward.
    std::copy(dx, dx + N * D, dx1_.begin());
    op::rmsnorm_weighted_backward(dhx_.data(), core(P)[C::kExpNorm], y2_.data(), rstd2_.data(), N, D,
                                  core(G)[C::kExpNorm], dx1_.data(), true, scratch_.data());
    // MRB: y = out_proj(g * scan(in_proj(n1w))) + bias.
    op::linear_backward(dx1_.data(), u_.data(), core(P)[C::kOutW], scratch_.data(), core(G)[C::kOutW], n, D,
                        D, false);
    op::bias_backward(dx1_.data(), n, D, core(G)[C::kOutB]);
    op::mrb_gate_backward(scratch_.data(), h_.data(), g_.data(), shape, dh_.data(), dg_.data());
    for (std::size_t i = 0; i < dg_.size(); ++i) dg_[i] *= g_[i] * (T(1) - g_[i]);
    op::mrb_scan_backward(dh_.data(), shape, gamma_, dh_.data());
    op::linear_backward(dh_.data(), n1w_.data(), core(P)[C::kInW], dhx_.data(), core(G)[C::kInW], n, D, D,
                        false);
    op::bias_backward(dh_.data(), n, D, core(G)[C::kInB]);
    op::linear_backward(dg_.data(), n1w_.data(), core(P)[C::kGateW], dhx_.data(), core(G)[C::kGateW], n, D,
                        K, true);
    op::bias_backward(dg_.data(), n, K, core(G)[C::kGateB]);
    std::copy(dx1_.begin(), dx1_.end(), dx);
    op::rmsnorm_weighted_backward(dhx_.data(), core(P)[C::kMrbNorm], y1_.data(), rstd1_.data(), N, D,
                                  core(G)[C::kMrbNorm], dx, true, scratch_.data());
  }

  auto& memory() {
    static_assert(kMemory, "this block has no memory expert");
    return hana::at(experts_, hana::int_c<(kMemory ? kMemoryIndex : 0)>);
  }
  const auto& memory() const {
    static_assert(kMemory, "this block has no memory expert");
    return hana::at(experts_, hana::int_c<(kMemory ? kMemoryIndex : 0)>);
  }
  std::size_t tape_size() const { return (S.causal() ? tokens() : std::size_t(batch_)) * Sl * M; }

 private:
  using C = BlockCore<S>;
  using R = Router<S, T, E>;
  template <class X>
  Tensors<X> core(X* base) const {
    return {base, &rows_.core};
  }
  template <class X>
  Tensors<X> router(X* base) const {
    return {base, &rows_.router};
  }
  template <class X>
  Tensors<X> expert(X* base, std::size_t i) const {
    return {base, &rows_.expert[i]};
  }
  ExpertIo<T> io(const T* tape_in) const {
    return ExpertIo<T>{batch_, seq_, hx_.data(), tape_in};
  }

  int batch_, seq_;
  BlockLayout rows_;
  Router<S, T, E> router_;
  Experts experts_;
  std::vector<double> gamma_;
  std::vector<T> y1_, n1w_, h_, u_, y2_, hx_, dhx_, dx1_, scratch_, dh_, rstd1_, rstd2_, g_, dg_, dp_, outs_, dout_e_,
      dtape_mid_;
  std::vector<T> frac_pos_;  // causal: per position
  T frac_ = 0;               // reference: one for the batch
};

}  // namespace pgolf::prism
