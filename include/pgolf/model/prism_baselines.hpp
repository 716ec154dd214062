// The PRISM harness's baselines (PRISM.md 2.9), from pgolf's own layers, at the toy PrismSpec's
// sizes (D, L, vocab, SwiGLU hidden H = mult * D, tied head, RMSNorm with weight, eps):
//
//   transformer  x += W_o CausalAttention(split(W_qkv RMSNorm(x)))   (4 heads; no positional
//                encoding, as the reference, or RoPE on every head dim: Mixer::transformer_rope)
//   ssm          x += W_out h_t,  h_t = exp(dt_t A) h_{t-1} + dt_t W_B n_t,  dt_t = softplus(w . n_t + b),
//                A = -softplus(A_log), n = RMSNorm(x); no C(x), no D-skip, no gating (as the reference)
//   then, in both, x += SwiGLU(RMSNorm(x)); logits = RMSNorm_f(x) E^T.
//
// Init as the reference: PyTorch's default for W_qkv, W_o and the SSM's linears, N(0, 0.02) for the
// SwiGLU and the embedding, A_log ~ N(0, 0.1^2). Targets < 0 are not scored.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/model/prism_spec.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/ops/cpu/attention.hpp"
#include "pgolf/ops/cpu/cross_entropy.hpp"
#include "pgolf/ops/cpu/embedding.hpp"
#include "pgolf/ops/cpu/linear.hpp"
#include "pgolf/ops/cpu/rmsnorm.hpp"
#include "pgolf/ops/cpu/rope.hpp"
#include "pgolf/ops/cpu/swiglu.hpp"

namespace pgolf {

enum class BaselineMixer { transformer, transformer_rope, ssm };

inline constexpr int kBaselineHeads = 4;
inline constexpr int kBaselineSsmState = 16;

// Rows of one block: norm1, mixer tensors (3 for attention: qkv, o; 5 for the SSM), norm2, SwiGLU.
template <PrismSpec S, BaselineMixer X>
constexpr int baseline_block_rows() {
  return X == BaselineMixer::ssm ? 1 + 5 + 1 + 3 : 1 + 2 + 1 + 3;
}

template <PrismSpec S, BaselineMixer X>
constexpr auto baseline_param_table() {
  static_assert(validate_prism_spec<S>());
  static_assert(X == BaselineMixer::ssm || S.d_model % kBaselineHeads == 0,
                "PrismSpec.d_model must be divisible by the Transformer baseline's 4 heads");
  constexpr std::size_t rows = 2 + std::size_t(S.layers) * baseline_block_rows<S, X>() + (S.tie_embeddings ? 0 : 1);
  std::array<ParamInfo, rows> table{};
  ParamTableBuilder<rows> tb{table};
  auto add = [&](auto&&... a) { return tb.add(a...); };
  const int D = S.d_model, H = S.hidden(), N = kBaselineSsmState;
  const Init normal{InitKind::normal, S.init_std}, ones{InitKind::ones};
  const auto Mx = OptimGroup::muon_matrix, Sc = OptimGroup::adam_scalar;
  add("embed.weight", S.vocab, D, 2, normal, OptimGroup::adam_embed, false, -1);
  for (int b = 0; b < S.layers; ++b) {
    auto name = [b](const char* suffix) { return ParamName("blocks.").append(b).append(".").append(suffix); };
    add(name("norm1.weight"), D, 1, 1, ones, Sc, true, b);
    if constexpr (X == BaselineMixer::ssm) {
      add(name("ssm.B.weight"), N, D, 2, torch_linear_init(D), Mx, false, b);
      add(name("ssm.dt.weight"), 1, D, 2, torch_linear_init(D), Sc, false, b);
      add(name("ssm.dt.bias"), 1, 1, 1, torch_linear_init(D), Sc, false, b);
      add(name("ssm.A_log"), N, 1, 1, Init{InitKind::normal, 0.1}, Sc, false, b);
      add(name("ssm.out.weight"), D, N, 2, torch_linear_init(N), Mx, false, b);
    } else {
      add(name("attn.qkv.weight"), 3 * D, D, 2, torch_linear_init(D), Mx, false, b);
      add(name("attn.o.weight"), D, D, 2, torch_linear_init(D), Mx, false, b);
    }
    add(name("norm2.weight"), D, 1, 1, ones, Sc, true, b);
    add(name("ffn.w_gate.weight"), H, D, 2, normal, Mx, false, b);
    add(name("ffn.w_up.weight"), H, D, 2, normal, Mx, false, b);
    add(name("ffn.w_down.weight"), D, H, 2, normal, Mx, false, b);
  }
  add("norm_f.weight", D, 1, 1, ones, Sc, true, -1);
  if (!S.tie_embeddings) add("head.weight", S.vocab, D, 2, normal, OptimGroup::adam_head, false, -1);
  tb.finish();
  return table;
}

template <PrismSpec S, BaselineMixer X, class T = float>
class PrismBaseline {
 public:
  using Scalar = T;
  static constexpr auto param_table = baseline_param_table<S, X>();
  static constexpr std::size_t num_params = table_size(param_table);
  static constexpr int kVocab = S.vocab, kDim = S.d_model, kHidden = S.hidden(), kState = kBaselineSsmState;
  static constexpr int kRows = baseline_block_rows<S, X>();
  static constexpr int kHeadDim = S.d_model / kBaselineHeads;

  PrismBaseline(int batch, int seq) : batch_(batch), seq_(seq), params_(num_params, T(0)), grads_(num_params, T(0)) {
    PGOLF_CHECK(batch > 0 && seq > 0, "PrismBaseline: batch and sequence length must be positive, got ", batch, " and ",
                seq);
    const std::size_t N = tokens(), D = kDim, L = std::size_t(S.layers);
    xs_.resize((2 * L + 1) * N * D);
    for (auto* v : {&y1_, &n1_, &y2_, &n2_}) v->resize(L * N * D);
    for (auto* v : {&r1_, &r2_}) v->resize(L * N);
    fa_.resize(L * N * kHidden), fb_.resize(L * N * kHidden), fs_.resize(L * N * kHidden);
    if constexpr (X == BaselineMixer::ssm) {
      bt_.resize(L * N * kState), dt_raw_.resize(L * N), h_.resize(L * N * kState);
    } else {
      qkv_.resize(L * N * 3 * D), q_.resize(L * N * D), k_.resize(L * N * D), v_.resize(L * N * D),
          att_.resize(L * N * D), lse_.resize(L * N * kBaselineHeads);
      rope_ = ops::cpu::RopeTable<T>(seq, kHeadDim, 10000.0);
    }
    yf_.resize(N * D), rf_.resize(N), hf_.resize(N * D), logits_.resize(N * kVocab), row_loss_.resize(N);
    g1_.resize(N * D), g2_.resize(N * D), g3_.resize(N * std::max<std::size_t>(3 * D, kHidden)),
        g4_.resize(N * std::max<std::size_t>(3 * D, kHidden)), g5_.resize(N * D);
  }

  void init(std::uint64_t seed) { init_params<T>(param_table, seed, std::span<T>(params_)); }
  std::span<T> params() { return params_; }
  std::span<const T> params() const { return params_; }
  std::span<T> grads() { return grads_; }
  std::span<const T> grads() const { return grads_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), T(0)); }
  int batch() const { return batch_; }
  int seq_len() const { return seq_; }
  std::size_t tokens() const { return std::size_t(batch_) * seq_; }
  std::span<const T> row_losses() const { return row_loss_; }
  std::span<const T> logits() const { return logits_; }  // valid until backward()

  double forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets) {
    namespace op = ops::cpu;
    const std::size_t N = tokens();
    const int n = int(N), D = kDim;
    PGOLF_CHECK(ids.size() == N && targets.size() == N, "PrismBaseline::forward: got ", ids.size(), " ids and ",
                targets.size(), " targets, expected ", N);
    ids_.assign(ids.begin(), ids.end());
    targets_.assign(targets.begin(), targets.end());
    op::embedding_forward(ids.data(), N, p(0), kVocab, D, x(0));
    const T eps = T(S.norm_eps);
    for (int b = 0; b < S.layers; ++b) {
      const std::size_t r = row(b);
      T* xin = x(2 * b);
      T* xmid = x(2 * b + 1);
      T* xout = x(2 * b + 2);
      op::rmsnorm_weighted_forward(xin, p(r), N, D, eps, at(y1_, b, D), at(r1_, b, 1), at(n1_, b, D));
      mixer_forward(b, r, xmid);  // xmid = mixer output
      for (std::size_t i = 0; i < N * D; ++i) xmid[i] += xin[i];
      const std::size_t rf = r + kRows - 4;  // norm2
      op::rmsnorm_weighted_forward(xmid, p(rf), N, D, eps, at(y2_, b, D), at(r2_, b, 1), at(n2_, b, D));
      op::linear_forward(at(n2_, b, D), p(rf + 1), at(fa_, b, kHidden), n, D, kHidden);
      op::linear_forward(at(n2_, b, D), p(rf + 2), at(fb_, b, kHidden), n, D, kHidden);
      op::swiglu_forward(at(fa_, b, kHidden), at(fb_, b, kHidden), N * kHidden, at(fs_, b, kHidden));
      op::linear_forward(at(fs_, b, kHidden), p(rf + 3), xout, n, kHidden, D);
      for (std::size_t i = 0; i < N * D; ++i) xout[i] += xmid[i];
    }
    op::rmsnorm_weighted_forward(x(2 * S.layers), p(final_norm()), N, D, eps, yf_.data(), rf_.data(), hf_.data());
    op::linear_forward(hf_.data(), p(head()), logits_.data(), n, D, kVocab);
    return op::cross_entropy_forward(logits_.data(), targets_.data(), N, kVocab, row_loss_.data());
  }

  void backward(double grad_scale = 1.0) {
    namespace op = ops::cpu;
    PGOLF_CHECK(targets_.size() == tokens(), "PrismBaseline::backward called before forward");
    const std::size_t N = tokens();
    const int n = int(N), D = kDim;
    const T scale = T(grad_scale / double(std::max<std::size_t>(op::scored_rows(targets_.data(), N), 1)));
    op::cross_entropy_backward(logits_.data(), targets_.data(), N, kVocab, scale, logits_.data());
    op::linear_backward(logits_.data(), hf_.data(), p(head()), g1_.data(), g(head()), n, D, kVocab, false);
    std::vector<T>& dx = dx_;
    dx.assign(N * D, T(0));
    op::rmsnorm_weighted_backward(g1_.data(), p(final_norm()), yf_.data(), rf_.data(), N, D, g(final_norm()), dx.data(),
                                  false, g5_.data());
    for (int b = S.layers - 1; b >= 0; --b) {
      const std::size_t r = row(b), rf = r + kRows - 4;
      // SwiGLU sub-block: dx flows through unchanged and through the FFN.
      op::linear_backward(dx.data(), at(fs_, b, kHidden), p(rf + 3), g3_.data(), g(rf + 3), n, kHidden, D, false);
      op::swiglu_backward(g3_.data(), at(fa_, b, kHidden), at(fb_, b, kHidden), N * kHidden, g3_.data(), g4_.data());
      op::linear_backward(g3_.data(), at(n2_, b, D), p(rf + 1), g1_.data(), g(rf + 1), n, D, kHidden, false);
      op::linear_backward(g4_.data(), at(n2_, b, D), p(rf + 2), g1_.data(), g(rf + 2), n, D, kHidden, true);
      op::rmsnorm_weighted_backward(g1_.data(), p(rf), at(y2_, b, D), at(r2_, b, 1), N, D, g(rf), dx.data(), true,
                                    g5_.data());
      // Mixer sub-block.
      mixer_backward(b, r, dx.data(), g1_.data());  // g1 = d n1
      op::rmsnorm_weighted_backward(g1_.data(), p(r), at(y1_, b, D), at(r1_, b, 1), N, D, g(r), dx.data(), true,
                                    g5_.data());
    }
    op::embedding_backward(ids_.data(), N, dx.data(), D, g(0));
  }

 private:
  static constexpr std::size_t row(int b) { return 1 + std::size_t(b) * kRows; }
  static constexpr std::size_t final_norm() { return 1 + std::size_t(S.layers) * kRows; }
  static constexpr std::size_t head() { return S.tie_embeddings ? 0 : final_norm() + 1; }
  T* p(std::size_t r) { return params_.data() + param_table[r].offset; }
  T* g(std::size_t r) { return grads_.data() + param_table[r].offset; }
  T* x(int i) { return xs_.data() + std::size_t(i) * tokens() * kDim; }
  T* at(std::vector<T>& v, int b, int width) { return v.data() + std::size_t(b) * tokens() * width; }
  ops::cpu::AttentionShape shape() const { return {batch_, seq_, kBaselineHeads, kBaselineHeads, kHeadDim}; }

  void mixer_forward(int b, std::size_t r, T* out) {
    namespace op = ops::cpu;
    const std::size_t N = tokens();
    const int n = int(N), D = kDim;
    const T* nin = at(n1_, b, D);
    if constexpr (X == BaselineMixer::ssm) {
      T* Bt = at(bt_, b, kState);
      T* dtr = at(dt_raw_, b, 1);
      T* h = at(h_, b, kState);
      op::linear_forward(nin, p(r + 1), Bt, n, D, kState);
      op::linear_forward(nin, p(r + 2), dtr, n, D, 1);
      for (std::size_t t = 0; t < N; ++t) dtr[t] += p(r + 3)[0];
      const T* A_log = p(r + 4);
      for (int bb = 0; bb < batch_; ++bb)
        for (int t = 0; t < seq_; ++t) {
          const std::size_t i = std::size_t(bb) * seq_ + t;
          const T dt = softplus(dtr[i]);
          for (int s = 0; s < kState; ++s) {
            const T a = std::exp(-dt * softplus(A_log[s]));
            const T prev = t > 0 ? h[(i - 1) * kState + s] : T(0);
            h[i * kState + s] = a * prev + dt * Bt[i * kState + s];
          }
        }
      op::linear_forward(h, p(r + 5), out, n, kState, D);
    } else {
      T* qkv = at(qkv_, b, 3 * D);
      op::linear_forward(nin, p(r + 1), qkv, n, D, 3 * D);
      T* q = at(q_, b, D);
      T* k = at(k_, b, D);
      T* v = at(v_, b, D);
      for (std::size_t t = 0; t < N; ++t)
        for (int i = 0; i < D; ++i) {
          q[t * D + i] = qkv[t * 3 * D + i];
          k[t * D + i] = qkv[t * 3 * D + D + i];
          v[t * D + i] = qkv[t * 3 * D + 2 * D + i];
        }
      if constexpr (X == BaselineMixer::transformer_rope) {
        op::rope_forward(q, q, batch_, seq_, kBaselineHeads, kHeadDim, rope_);
        op::rope_forward(k, k, batch_, seq_, kBaselineHeads, kHeadDim, rope_);
      }
      op::attention_forward(q, k, v, ones_.data(), shape(), at(att_, b, D), at(lse_, b, kBaselineHeads));
      op::linear_forward(at(att_, b, D), p(r + 2), out, n, D, D);
    }
  }

  // dx: d loss / d mixer output (the residual's gradient); writes d loss / d n1 into dn.
  void mixer_backward(int b, std::size_t r, const T* dx, T* dn) {
    namespace op = ops::cpu;
    const std::size_t N = tokens();
    const int n = int(N), D = kDim;
    const T* nin = at(n1_, b, D);
    if constexpr (X == BaselineMixer::ssm) {
      const T* Bt = at(bt_, b, kState);
      const T* dtr = at(dt_raw_, b, 1);
      const T* h = at(h_, b, kState);
      T* dh = g3_.data();
      op::linear_backward(dx, h, p(r + 5), dh, g(r + 5), n, kState, D, false);
      T* dB = g4_.data();
      std::vector<T> ddt(N, T(0));
      const T* A_log = p(r + 4);
      T* dA_log = g(r + 4);
      for (int bb = 0; bb < batch_; ++bb) {
        std::array<T, kBaselineSsmState> carry{};
        for (int t = seq_ - 1; t >= 0; --t) {
          const std::size_t i = std::size_t(bb) * seq_ + t;
          const T dt = softplus(dtr[i]);
          for (int s = 0; s < kState; ++s) {
            const T A = -softplus(A_log[s]);
            const T a = std::exp(dt * A);
            const T prev = t > 0 ? h[(i - 1) * kState + s] : T(0);
            const T gh = dh[i * kState + s] + carry[std::size_t(s)];
            ddt[i] += gh * (prev * a * A + Bt[i * kState + s]);
            dB[i * kState + s] = gh * dt;
            dA_log[s] += gh * prev * a * dt * (-op::sigmoid(A_log[s]));
            carry[std::size_t(s)] = gh * a;
          }
          ddt[i] *= op::sigmoid(dtr[i]);
        }
      }
      op::linear_backward(dB, nin, p(r + 1), dn, g(r + 1), n, D, kState, false);
      op::linear_backward(ddt.data(), nin, p(r + 2), dn, g(r + 2), n, D, 1, true);
      op::bias_backward(ddt.data(), n, 1, g(r + 3));
    } else {
      T* datt = g5_.data();
      op::linear_backward(dx, at(att_, b, D), p(r + 2), datt, g(r + 2), n, D, D, false);
      std::vector<T> dq(N * D), dk(N * D), dv(N * D), dgain(kBaselineHeads, T(0));
      op::attention_backward(datt, at(q_, b, D), at(k_, b, D), at(v_, b, D), ones_.data(), at(att_, b, D),
                             at(lse_, b, kBaselineHeads), shape(), dq.data(), dk.data(), dv.data(), dgain.data());
      if constexpr (X == BaselineMixer::transformer_rope) {
        op::rope_backward(dq.data(), dq.data(), batch_, seq_, kBaselineHeads, kHeadDim, rope_);
        op::rope_backward(dk.data(), dk.data(), batch_, seq_, kBaselineHeads, kHeadDim, rope_);
      }
      T* dqkv = g3_.data();
      for (std::size_t t = 0; t < N; ++t)
        for (int i = 0; i < D; ++i) {
          dqkv[t * 3 * D + i] = dq[t * D + i];
          dqkv[t * 3 * D + D + i] = dk[t * D + i];
          dqkv[t * 3 * D + 2 * D + i] = dv[t * D + i];
        }
      op::linear_backward(dqkv, nin, p(r + 1), dn, g(r + 1), n, D, 3 * D, false);
    }
  }

  static T softplus(T u) { return u > T(20) ? u : std::log1p(std::exp(u)); }

  int batch_, seq_;
  std::vector<T> params_, grads_;
  std::vector<T> xs_, y1_, n1_, y2_, n2_, r1_, r2_, fa_, fb_, fs_;
  std::vector<T> bt_, dt_raw_, h_;                        // ssm
  std::vector<T> qkv_, q_, k_, v_, att_, lse_;           // attention
  std::array<T, kBaselineHeads> ones_ = [] {
    std::array<T, kBaselineHeads> a{};
    a.fill(T(1));
    return a;
  }();
  ops::cpu::RopeTable<T> rope_;
  std::vector<T> yf_, rf_, hf_, logits_, row_loss_, g1_, g2_, g3_, g4_, g5_, dx_;
  std::vector<std::int32_t> ids_, targets_;
};

}  // namespace pgolf
