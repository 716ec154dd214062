// Gpt<Spec, T>: the parameter-golf reference GPT on the CPU backend, with a hand-written backward.
//
//   x0 = RMSNorm(E[ids]);  x = x0
//   for virtual layer v (physical block b = v % blocks):
//       decoder layers first add a U-Net skip: x = x + w_i * skip.pop()
//       x_in = m0 * x + m1 * x0
//       x1   = x_in + attn_scale * Attn(RMSNorm(x_in))
//       x    = x1 + mlp_scale * MLP(RMSNorm(x1))
//       encoder layers push x
//   loss = mean CE(softcap * tanh(RMSNorm(x) E^T / softcap), targets)
//
// Depth is a schedule of virtual layers over physical blocks, so weight sharing is a change of
// spec (depth.loops), not of code: each use of a block adds its weight gradient into the block's
// single gradient slot. All parameters live in one flat buffer at compile-time offsets given by
// the parameter table; all saved activations live in one arena sized from (batch, seq_len).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/model/gpt_params.hpp"
#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/ops/cpu/activation.hpp"
#include "pgolf/ops/cpu/attention.hpp"
#include "pgolf/ops/cpu/channel_scale.hpp"
#include "pgolf/ops/cpu/cross_entropy.hpp"
#include "pgolf/ops/cpu/embedding.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/resid_mix.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"
#include "pgolf/ops/cpu/rope.hpp"
#include "pgolf/ops/cpu/skip_add.hpp"
#include "pgolf/ops/cpu/softcap.hpp"

namespace pgolf {

template <GptSpec S, class T = float>
class Gpt {
  static_assert(validate_spec<S>());

 public:
  using Scalar = T;
  static constexpr GptSpec spec = S;
  static constexpr auto param_table = gpt_param_table<S>();
  static constexpr std::size_t num_params = table_size(param_table);
  using Index = GptParamIndex<S>;

  static constexpr int kDim = S.dim, kVocab = S.vocab, kLayers = S.depth.layers;
  static constexpr int kHeads = S.attention.heads, kKvHeads = S.attention.kv_heads, kHeadDim = S.head_dim();
  static constexpr int kKvDim = S.kv_dim(), kHidden = S.hidden();
  static constexpr int kEncoder = S.encoder_layers(), kSkips = S.skip_count();

  Gpt(int batch, int seq_len)
      : batch_(batch), seq_(seq_len), params_(num_params, T(0)), grads_(num_params, T(0)) {
    PGOLF_CHECK(batch > 0, "Gpt: batch must be positive, got ", batch);
    PGOLF_CHECK(seq_len > 0, "Gpt: sequence length must be positive, got ", seq_len);
    rope_ = ops::cpu::RopeTable<T>(seq_len, S.attention.rope_dims, S.attention.rope_base);
    plan_arena();
  }

  // Reference initialisation, drawn from the counter-based generator keyed by (seed, tensor, index).
  void init(std::uint64_t seed) { init_params<T>(param_table, seed, std::span<T>(params_)); }

  std::span<T> params() { return params_; }
  std::span<const T> params() const { return params_; }
  std::span<T> grads() { return grads_; }
  std::span<const T> grads() const { return grads_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), T(0)); }

  T* param(std::size_t row) { return params_.data() + param_table[row].offset; }
  const T* param(std::size_t row) const { return params_.data() + param_table[row].offset; }
  T* grad(std::size_t row) { return grads_.data() + param_table[row].offset; }

  int batch() const { return batch_; }
  int seq_len() const { return seq_; }
  std::size_t tokens() const { return std::size_t(batch_) * seq_; }
  std::size_t arena_elements() const { return arena_.size(); }
  // Per-token losses (nats) of the last forward, in (batch, position) order.
  std::span<const T> row_losses() const { return {a_.row_loss, tokens()}; }
  // Soft-capped logits [N, V] of the last forward (valid until backward).
  std::span<const T> logits() const { return {a_.logits, tokens() * std::size_t(kVocab)}; }

  // ids, targets: [batch, seq_len] row-major; a target < 0 is not scored. Returns the mean
  // cross-entropy (nats) over scored positions.
  double forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets) {
    namespace op = ops::cpu;
    const std::size_t N = tokens();
    PGOLF_CHECK(ids.size() == N, "Gpt::forward: got ", ids.size(), " input ids, expected batch*seq_len = ", N);
    PGOLF_CHECK(targets.size() == N, "Gpt::forward: got ", targets.size(), " targets, expected ", N);
    ids_.assign(ids.begin(), ids.end());
    targets_.assign(targets.begin(), targets.end());
    const T eps = T(S.norm.eps);

    op::embedding_forward(ids_.data(), N, param(Index::tok_emb), kVocab, kDim, a_.emb);
    op::rmsnorm_forward(a_.emb, N, kDim, eps, a_.x0, a_.rstd0);
    const T* x = a_.x0;
    for (int v = 0; v < kLayers; ++v) {
      Layer& L = layers_[v];
      std::copy(x, x + N * kDim, L.x_prev);
      if (const int i = v - kEncoder; v >= kEncoder && i < kSkips)
        op::skip_add_forward(L.x_prev, param(Index::skip_weights) + std::size_t(i) * kDim,
                             layers_[kEncoder - 1 - i].out, N, kDim);
      block_forward(S.block_of(v), L);
      x = L.out;
    }
    op::rmsnorm_forward(x, N, kDim, eps, a_.hf, a_.rstd_f);
    op::linear_forward(a_.hf, head_weight(), a_.logits, int(N), kDim, kVocab);
    op::softcap_forward(a_.logits, N * kVocab, T(S.head.softcap), a_.logits);
    return op::cross_entropy_forward(a_.logits, targets_.data(), N, kVocab, a_.row_loss);
  }

  // Adds d(grad_scale * loss)/d(params) into grads() for the last forward.
  void backward(double grad_scale = 1.0) {
    namespace op = ops::cpu;
    PGOLF_CHECK(ids_.size() == tokens(), "Gpt::backward called before forward");
    const std::size_t N = tokens();
    const std::size_t scored = std::max<std::size_t>(op::scored_rows(targets_.data(), N), 1);
    op::cross_entropy_backward(a_.logits, targets_.data(), N, kVocab, T(grad_scale / double(scored)), g_.logits);
    op::softcap_backward(g_.logits, a_.logits, N * kVocab, T(S.head.softcap), g_.logits);
    op::linear_backward(g_.logits, a_.hf, head_weight(), g_.n, head_grad(), int(N), kDim, kVocab, false);
    op::rmsnorm_backward(g_.n, a_.hf, a_.rstd_f, N, kDim, g_.x, false);

    std::fill(g_.x0, g_.x0 + N * kDim, T(0));
    std::fill(g_.skip, g_.skip + std::size_t(kSkips) * N * kDim, T(0));
    for (int v = kLayers - 1; v >= 0; --v) {
      Layer& L = layers_[v];
      if (v < kSkips) {  // this encoder output also fed decoder layer kEncoder + (kEncoder - 1 - v)
        const T* gs = g_.skip + std::size_t(kEncoder - 1 - v) * N * kDim;
        for (std::size_t e = 0; e < N * kDim; ++e) g_.x[e] += gs[e];
      }
      block_backward(S.block_of(v), L);  // g_.x: d out -> d x_prev
      if (const int i = v - kEncoder; v >= kEncoder && i < kSkips)
        op::skip_add_backward(g_.x, param(Index::skip_weights) + std::size_t(i) * kDim,
                              layers_[kEncoder - 1 - i].out, N, kDim, g_.skip + std::size_t(i) * N * kDim,
                              grad(Index::skip_weights) + std::size_t(i) * kDim);
    }
    for (std::size_t e = 0; e < N * kDim; ++e) g_.x0[e] += g_.x[e];
    op::rmsnorm_backward(g_.x0, a_.x0, a_.rstd0, N, kDim, g_.n, false);
    op::embedding_backward(ids_.data(), N, g_.n, kDim, grad(Index::tok_emb));
  }

 private:
  // Activations one virtual layer saves for its backward.
  struct Layer {
    T *x_prev, *xin, *rstd1, *n1, *qn, *rstd_q, *kn, *rstd_k, *q, *k, *v, *lse, *y, *o, *x1, *rstd2, *n2, *u,
        *act, *m, *out;
  };
  struct Globals {
    T *emb, *rstd0, *x0, *hf, *rstd_f, *logits, *row_loss;
  };
  struct Scratch {
    T *x, *x1, *xin, *m, *n, *o, *y, *q, *k, *v, *qlin, *klin, *act, *u, *x0, *skip, *logits;
  };

  const T* head_weight() const { return S.embedding.tied ? param(Index::tok_emb) : param(Index::lm_head); }
  T* head_grad() { return S.embedding.tied ? grad(Index::tok_emb) : grad(Index::lm_head); }

  T* bp(int b, BlockParam p) { return param(Index::block(b, p)); }
  T* bg(int b, BlockParam p) { return grad(Index::block(b, p)); }

  ops::cpu::AttentionShape attn_shape() const { return {batch_, seq_, kHeads, kKvHeads, kHeadDim}; }

  void block_forward(int b, Layer& L) {
    namespace op = ops::cpu;
    using P = BlockParam;
    const std::size_t N = tokens();
    const int n = int(N);
    const T eps = T(S.norm.eps);
    op::resid_mix_forward(L.x_prev, a_.x0, bp(b, P::resid_mix), N, kDim, L.xin);
    op::rmsnorm_forward(L.xin, N, kDim, eps, L.n1, L.rstd1);
    op::linear_forward(L.n1, bp(b, P::c_q), g_.qlin, n, kDim, kDim);
    op::linear_forward(L.n1, bp(b, P::c_k), g_.klin, n, kDim, kKvDim);
    op::linear_forward(L.n1, bp(b, P::c_v), L.v, n, kDim, kKvDim);
    op::rmsnorm_forward(g_.qlin, N * kHeads, kHeadDim, eps, L.qn, L.rstd_q);
    op::rmsnorm_forward(g_.klin, N * kKvHeads, kHeadDim, eps, L.kn, L.rstd_k);
    op::rope_forward(L.qn, L.q, batch_, seq_, kHeads, kHeadDim, rope_);
    op::rope_forward(L.kn, L.k, batch_, seq_, kKvHeads, kHeadDim, rope_);
    op::attention_forward(L.q, L.k, L.v, bp(b, P::q_gain), attn_shape(), L.y, L.lse);
    op::linear_forward(L.y, bp(b, P::attn_proj), L.o, n, kDim, kDim);
    op::channel_scale_forward(L.xin, bp(b, P::attn_scale), L.o, N, kDim, L.x1);
    op::rmsnorm_forward(L.x1, N, kDim, eps, L.n2, L.rstd2);
    op::linear_forward(L.n2, bp(b, P::fc), L.u, n, kDim, kHidden);
    op::activation_forward<S.mlp.activation>(L.u, N * kHidden, L.act);
    op::linear_forward(L.act, bp(b, P::mlp_proj), L.m, n, kHidden, kDim);
    op::channel_scale_forward(L.x1, bp(b, P::mlp_scale), L.m, N, kDim, L.out);
  }

  // In: g_.x = d loss / d L.out. Out: g_.x = d loss / d L.x_prev; g_.x0 and block grads accumulate.
  void block_backward(int b, Layer& L) {
    namespace op = ops::cpu;
    using P = BlockParam;
    const std::size_t N = tokens(), ND = N * kDim;
    const int n = int(N);
    // out = x1 + mlp_scale * m
    op::channel_scale_backward(g_.x, bp(b, P::mlp_scale), L.m, N, kDim, g_.m, bg(b, P::mlp_scale));
    op::linear_backward(g_.m, L.act, bp(b, P::mlp_proj), g_.act, bg(b, P::mlp_proj), n, kHidden, kDim, false);
    op::activation_backward<S.mlp.activation>(g_.act, L.u, N * kHidden, g_.u);
    op::linear_backward(g_.u, L.n2, bp(b, P::fc), g_.n, bg(b, P::fc), n, kDim, kHidden, false);
    std::copy(g_.x, g_.x + ND, g_.x1);
    op::rmsnorm_backward(g_.n, L.n2, L.rstd2, N, kDim, g_.x1, true);
    // x1 = xin + attn_scale * o
    op::channel_scale_backward(g_.x1, bp(b, P::attn_scale), L.o, N, kDim, g_.o, bg(b, P::attn_scale));
    op::linear_backward(g_.o, L.y, bp(b, P::attn_proj), g_.y, bg(b, P::attn_proj), n, kDim, kDim, false);
    op::attention_backward(g_.y, L.q, L.k, L.v, bp(b, P::q_gain), L.y, L.lse, attn_shape(), g_.q, g_.k, g_.v,
                           bg(b, P::q_gain));
    op::rope_backward(g_.q, g_.q, batch_, seq_, kHeads, kHeadDim, rope_);
    op::rope_backward(g_.k, g_.k, batch_, seq_, kKvHeads, kHeadDim, rope_);
    op::rmsnorm_backward(g_.q, L.qn, L.rstd_q, N * kHeads, kHeadDim, g_.qlin, false);
    op::rmsnorm_backward(g_.k, L.kn, L.rstd_k, N * kKvHeads, kHeadDim, g_.klin, false);
    op::linear_backward(g_.qlin, L.n1, bp(b, P::c_q), g_.n, bg(b, P::c_q), n, kDim, kDim, false);
    op::linear_backward(g_.klin, L.n1, bp(b, P::c_k), g_.n, bg(b, P::c_k), n, kDim, kKvDim, true);
    op::linear_backward(g_.v, L.n1, bp(b, P::c_v), g_.n, bg(b, P::c_v), n, kDim, kKvDim, true);
    std::copy(g_.x1, g_.x1 + ND, g_.xin);
    op::rmsnorm_backward(g_.n, L.n1, L.rstd1, N, kDim, g_.xin, true);
    // xin = m0 * x_prev + m1 * x0
    op::resid_mix_backward(g_.xin, L.x_prev, a_.x0, bp(b, P::resid_mix), N, kDim, g_.x, g_.x0, bg(b, P::resid_mix));
  }

  // One arena for saved activations and one region for backward scratch, carved by a bump allocator.
  void plan_arena() {
    const std::size_t N = tokens(), ND = N * kDim, NKV = N * kKvDim, NH = N * kHidden;
    const std::size_t lse = std::size_t(batch_) * kHeads * seq_;
    std::size_t total = 0;
    std::vector<T**> slots;
    std::vector<std::size_t> sizes;
    auto take = [&](T*& ptr, std::size_t n) {
      slots.push_back(&ptr);
      sizes.push_back(n);
      total += n;
    };
    take(a_.emb, ND), take(a_.rstd0, N), take(a_.x0, ND), take(a_.hf, ND), take(a_.rstd_f, N);
    take(a_.logits, N * kVocab), take(a_.row_loss, N);
    layers_.resize(kLayers);
    for (Layer& L : layers_) {
      take(L.x_prev, ND), take(L.xin, ND), take(L.rstd1, N), take(L.n1, ND), take(L.qn, ND);
      take(L.rstd_q, N * kHeads), take(L.kn, NKV), take(L.rstd_k, N * kKvHeads), take(L.q, ND), take(L.k, NKV);
      take(L.v, NKV), take(L.lse, lse), take(L.y, ND), take(L.o, ND), take(L.x1, ND), take(L.rstd2, N);
      take(L.n2, ND), take(L.u, NH), take(L.act, NH), take(L.m, ND), take(L.out, ND);
    }
    take(g_.x, ND), take(g_.x1, ND), take(g_.xin, ND), take(g_.m, ND), take(g_.n, ND), take(g_.o, ND);
    take(g_.y, ND), take(g_.q, ND), take(g_.k, NKV), take(g_.v, NKV), take(g_.qlin, ND), take(g_.klin, NKV);
    take(g_.act, NH), take(g_.u, NH), take(g_.x0, ND), take(g_.skip, std::size_t(kSkips) * ND);
    take(g_.logits, N * kVocab);
    arena_.assign(total, T(0));
    std::size_t at = 0;
    for (std::size_t i = 0; i < slots.size(); ++i) {
      *slots[i] = arena_.data() + at;
      at += sizes[i];
    }
  }

  int batch_, seq_;
  std::vector<T> params_, grads_, arena_;
  std::vector<std::int32_t> ids_, targets_;
  ops::cpu::RopeTable<T> rope_;
  std::vector<Layer> layers_;
  Globals a_{};
  Scratch g_{};
};

}  // namespace pgolf
