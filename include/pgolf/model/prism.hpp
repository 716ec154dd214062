// Prism<Spec, T>: the PRISM model (PRISM.md 2.8) on the CPU backend, with a hand-written backward.
//
//   x = E[ids];  tape = 0
//   for block b: (x, tape) = Block_b(x, tape)     (the last block without memory: last-block rule)
//   logits = RMSNorm_f(x) E^T                       (tied; untied: a separate head)
//   loss = masked mean CE + w_lb sum_b aux_b - w_ent sum_b c_b H_b
//
// c_b counts how often block b's read entropy enters the loss: the reference accumulates the
// entropy along the tape, so block b is counted once per memory block at or after it; the causal
// behaviour counts each block once. Targets < 0 are not scored (the toy tasks' loss mask); the CE is
// the mean over scored positions, as the reference's masked CE.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/model/prism/block.hpp"
#include "pgolf/model/prism_params.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/ops/cpu/cross_entropy.hpp"
#include "pgolf/ops/cpu/embedding.hpp"

namespace pgolf {

// What a forward pass routed where and how the buses gated, per block (PRISM.md 4: the reference
// claims specialisation but exposes nothing).
struct PrismBlockStats {
  std::array<double, 3> routed{};     // share of tokens whose top-k holds each kind (neural, memory, symbolic); -1: absent
  std::array<double, 3> mean_prob{};  // mean soft router probability per kind; -1: absent
  std::vector<double> gate_mean;      // MRB read-out gate mean per rate group
  std::vector<double> gate_std;
  double read_entropy = -1;           // memory read entropy (nats), -1 without memory
  double slot_spread = -1;            // max |slot_s - slot_0| of the tape written, -1 without memory
  double symbolic_entropy = -1;
  double load_balance = 0;
};

template <PrismSpec S, class T = float>
class Prism {
  static_assert(validate_prism_spec<S>());

 public:
  using Scalar = T;
  using Backend = Cpu<T>;
  static constexpr PrismSpec spec = S;
  static constexpr auto layout = prism_layout<S>();
  static constexpr auto param_table = layout.table;
  static constexpr std::size_t num_params = table_size(param_table);
  static constexpr int kVocab = S.vocab, kDim = S.d_model, kLayers = S.layers;
  static constexpr ExpertMix kLastMix = S.mix_of(S.layers - 1);
  using BodyBlock = prism::Block<S, T, S.experts>;
  using LastBlock = prism::Block<S, T, kLastMix>;

  Prism(int batch, int seq_len)
      : batch_(batch), seq_(seq_len), params_(num_params, T(0)), grads_(num_params, T(0)),
        last_((check_shape(batch, seq_len), batch), seq_len, S.layers - 1, layout.blocks[std::size_t(S.layers - 1)]) {
    for (int b = 0; b + 1 < S.layers; ++b) body_.emplace_back(batch, seq_len, b, layout.blocks[std::size_t(b)]);
    const std::size_t N = tokens();
    xs_.resize(std::size_t(S.layers + 1) * N * kDim);
    tapes_.resize(std::size_t(S.layers + 1) * tape_size());
    dtape_a_.resize(tape_size()), dtape_b_.resize(tape_size());
    yf_.resize(N * kDim), rstdf_.resize(N), hf_.resize(N * kDim), logits_.resize(N * kVocab),
        row_loss_.resize(N), dx_.resize(N * kDim), dhf_.resize(N * kDim), scratch_.resize(N * kDim);
  }

  void init(std::uint64_t seed) { init_params<T>(param_table, seed, std::span<T>(params_)); }
  std::span<T> params() { return params_; }
  std::span<const T> params() const { return params_; }
  std::span<T> grads() { return grads_; }
  std::span<const T> grads() const { return grads_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), T(0)); }
  T* param(std::size_t row) { return params_.data() + param_table[row].offset; }
  T* grad(std::size_t row) { return grads_.data() + param_table[row].offset; }

  int batch() const { return batch_; }
  int seq_len() const { return seq_; }
  std::size_t tokens() const { return std::size_t(batch_) * seq_; }
  std::span<const T> row_losses() const { return row_loss_; }  // 0 where not scored
  std::span<const T> logits() const { return logits_; }        // [N, V]; valid until backward()
  double last_ce() const { return ce_; }
  double last_aux() const { return aux_; }
  // The tape each position of block b reads from (causal: [N, S, M]; reference: [B, S, M]).
  std::span<const T> tape(int boundary) const {
    return {tapes_.data() + std::size_t(boundary) * tape_size(), tape_size()};
  }
  static constexpr std::size_t tape_size_for(int batch, int seq) {
    return (S.causal() ? std::size_t(batch) * seq : std::size_t(batch)) * S.num_slots * S.d_mem;
  }
  std::size_t tape_size() const { return tape_size_for(batch_, seq_); }

  // ids, targets: [batch, seq_len]; a target < 0 is not scored. Returns CE + aux (the trained loss).
  double forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets) {
    namespace op = ops::cpu;
    const std::size_t N = tokens();
    PGOLF_CHECK(ids.size() == N, "Prism::forward: got ", ids.size(), " input ids, expected batch*seq_len = ", N);
    PGOLF_CHECK(targets.size() == N, "Prism::forward: got ", targets.size(), " targets, expected ", N);
    ids_.assign(ids.begin(), ids.end());
    targets_.assign(targets.begin(), targets.end());
    op::embedding_forward(ids.data(), N, own(params_, PrismModelRows::kEmbed), kVocab, kDim, x(0));
    std::fill(tapes_.begin(), tapes_.begin() + std::ptrdiff_t(tape_size()), T(0));
    for (int b = 0; b < S.layers; ++b)
      with_block(b, [&](auto& blk) { blk.forward(params_.data(), x(b), x(b + 1), tape_ptr(b), tape_ptr(b + 1)); });
    op::rmsnorm_weighted_forward(x(S.layers), own(params_, PrismModelRows::kFinalNorm), N, kDim, T(S.norm_eps), yf_.data(),
                                 rstdf_.data(), hf_.data());
    op::linear_forward(hf_.data(), own(params_, PrismModelRows::kHead), logits_.data(), int(N), kDim, kVocab);
    // Checks the targets against the vocabulary; rows with a target < 0 score 0 and are not counted.
    ce_ = op::cross_entropy_forward(logits_.data(), targets_.data(), N, kVocab, row_loss_.data());
    scored_ = op::scored_rows(targets_.data(), N);
    aux_ = 0;
    for (int b = 0; b < S.layers; ++b)
      with_block(b, [&](auto& blk) {
        aux_ += S.load_balance_weight * blk.router().aux();
        if constexpr (std::decay_t<decltype(blk)>::kMemory)
          aux_ -= S.read_entropy_weight * entropy_count(b) * blk.memory().read_entropy();
      });
    return ce_ + aux_;
  }

  // Per-token loss weights for the next backward only (token recycling): the CE term becomes
  // sum_n w_n CE_n / sum_n w_n over scored positions. The returned loss stays the plain mean.
  void set_token_weights(std::span<const T> w) {
    PGOLF_CHECK(w.size() == tokens(), "Prism::set_token_weights: got ", w.size(), " weights for ", tokens(), " tokens");
    weights_.assign(w.begin(), w.end());
  }

  // Adds d(grad_scale * (CE + aux))/d(params) into grads() for the last forward.
  void backward(double grad_scale = 1.0) {
    namespace op = ops::cpu;
    PGOLF_CHECK(targets_.size() == tokens(), "Prism::backward called before forward");
    const std::size_t N = tokens();
    // The logits are not needed after this: the gradient overwrites them. Uniform over scored rows,
    // or the per-token weights set for this backward (normalised over scored rows).
    if (weights_.empty()) {
      op::cross_entropy_backward(logits_.data(), targets_.data(), N, kVocab,
                                 T(grad_scale / double(std::max<std::size_t>(scored_, 1))), logits_.data());
    } else {
      double wsum = 0;
      for (std::size_t n = 0; n < N; ++n) wsum += targets_[n] < 0 ? 0.0 : double(weights_[n]);
      for (std::size_t n = 0; n < N; ++n) {
        const double w = wsum > 0 ? double(weights_[n]) / wsum : 0.0;
        op::cross_entropy_backward(logits_.data() + n * kVocab, targets_.data() + n, 1, kVocab, T(grad_scale * w),
                                   logits_.data() + n * kVocab);
      }
    }
    weights_.clear();
    op::linear_backward(logits_.data(), hf_.data(), own(params_, PrismModelRows::kHead), dhf_.data(), own(grads_, PrismModelRows::kHead), int(N), kDim,
                        kVocab, false);
    std::fill(dx_.begin(), dx_.end(), T(0));
    op::rmsnorm_weighted_backward(dhf_.data(), own(params_, PrismModelRows::kFinalNorm), yf_.data(), rstdf_.data(), N, kDim,
                                  own(grads_, PrismModelRows::kFinalNorm), dx_.data(), false, scratch_.data());
    std::fill(dtape_a_.begin(), dtape_a_.end(), T(0));  // nothing reads the last tape
    T* dtape_out = dtape_a_.data();
    T* dtape_in = dtape_b_.data();
    for (int b = S.layers - 1; b >= 0; --b) {
      with_block(b, [&](auto& blk) {
        blk.backward(params_.data(), grads_.data(), dx_.data(), tape_ptr(b), dtape_out, dtape_in,
                     grad_scale * S.load_balance_weight, -grad_scale * S.read_entropy_weight * entropy_count(b));
      });
      std::swap(dtape_out, dtape_in);
    }
    op::embedding_backward(ids_of_last_forward(), N, dx_.data(), kDim, own(grads_, PrismModelRows::kEmbed));
  }

  // For gradient checks: later forwards reuse the last forward's discrete decisions (top-k masks,
  // symbolic choices) and stop-gradient values, which makes the loss smooth in the parameters with
  // the straight-through gradient as its derivative. Off for training.
  void freeze_decisions(bool on) {
    for (int b = 0; b < S.layers; ++b) with_block(b, [&](auto& blk) { blk.freeze_decisions(on); });
  }

  // Routing and gate statistics of the last forward, per block.
  std::vector<PrismBlockStats> stats() const {
    std::vector<PrismBlockStats> out;
    for (int b = 0; b < S.layers; ++b)
      with_block(b, [&](const auto& blk) {
        using B = std::decay_t<decltype(blk)>;
        constexpr ExpertMix mix = B::kMix;
        PrismBlockStats st;
        st.routed.fill(-1), st.mean_prob.fill(-1);
        for (int i = 0; i < mix.count; ++i) {
          st.routed[std::size_t(mix.kinds[std::size_t(i)])] = blk.router().fraction()[std::size_t(i)];
          st.mean_prob[std::size_t(mix.kinds[std::size_t(i)])] = blk.router().mean_prob()[std::size_t(i)];
        }
        const auto g = blk.mrb_gates();
        const std::size_t N = tokens();
        st.gate_mean.assign(S.num_rates, 0), st.gate_std.assign(S.num_rates, 0);
        for (std::size_t t = 0; t < N; ++t)
          for (int k = 0; k < S.num_rates; ++k) st.gate_mean[std::size_t(k)] += double(g[t * S.num_rates + k]) / N;
        for (std::size_t t = 0; t < N; ++t)
          for (int k = 0; k < S.num_rates; ++k) {
            const double d = double(g[t * S.num_rates + k]) - st.gate_mean[std::size_t(k)];
            st.gate_std[std::size_t(k)] += d * d / N;
          }
        for (double& v : st.gate_std) v = std::sqrt(v);
        if constexpr (B::kMemory) {
          st.read_entropy = blk.memory().read_entropy();
          st.slot_spread = blk.memory().slot_spread();
        }
        boost::hana::for_each(blk.experts(), [&](const auto& e) {
          if constexpr (std::decay_t<decltype(e)>::kind == ExpertKind::symbolic) st.symbolic_entropy = e.selection_entropy();
        });
        st.load_balance = blk.router().aux();
        out.push_back(std::move(st));
      });
    return out;
  }

  // How many times block b's read entropy enters the loss.
  static constexpr double entropy_count(int b) {
    if (!S.mix_of(b).has(ExpertKind::memory)) return 0;
    if (S.causal()) return 1;
    int c = 0;
    for (int j = b; j < S.layers; ++j) c += S.mix_of(j).has(ExpertKind::memory) ? 1 : 0;
    return c;
  }

 private:
  static int check_shape(int batch, int seq) {
    PGOLF_CHECK(batch > 0, "Prism: batch must be positive, got ", batch);
    PGOLF_CHECK(seq > 0, "Prism: sequence length must be positive, got ", seq);
    return 0;
  }
  // The model's own tensors (PrismModelRows) in the parameter / gradient buffer.
  T* own(std::span<T> buf, int row) { return Tensors<T>{buf.data(), &layout.model}[row]; }
  template <class F>
  void with_block(int b, F&& f) {
    if (b == S.layers - 1) f(last_);
    else f(body_[std::size_t(b)]);
  }
  template <class F>
  void with_block(int b, F&& f) const {
    if (b == S.layers - 1) f(last_);
    else f(body_[std::size_t(b)]);
  }
  T* x(int boundary) { return xs_.data() + std::size_t(boundary) * tokens() * kDim; }
  T* tape_ptr(int boundary) { return tapes_.data() + std::size_t(boundary) * tape_size(); }
  const std::int32_t* ids_of_last_forward() const { return ids_.data(); }

  int batch_, seq_;
  std::vector<T> params_, grads_;
  std::vector<BodyBlock> body_;
  LastBlock last_;
  std::vector<T> xs_, tapes_, dtape_a_, dtape_b_, yf_, rstdf_, hf_, logits_, row_loss_, dx_, dhf_, scratch_;
  std::vector<std::int32_t> ids_, targets_;
  std::vector<T> weights_;
  std::size_t scored_ = 0;
  double ce_ = 0, aux_ = 0;
};

}  // namespace pgolf
