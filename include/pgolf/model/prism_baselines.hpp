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
//
// Built from components (include/pgolf/nn/) as LanguageModel<BaselineArch<Spec, Mixer>, Cpu<T>>:
//   embed  TokenEmbedding
//   block  WeightedNorm(norm1), mixer [PackedQkv, (Rope), CausalAttention<UnitGain>, Product(attn.o)
//          | SsmMixer], Residual, WeightedNorm(norm2), SwiGluMlp(ffn), Residual
//   head   WeightedNorm(norm_f), TiedHead or Product(head), CrossEntropy
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "pgolf/backend/cpu.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/model/prism_spec.hpp"
#include "pgolf/model/depth.hpp"
#include "pgolf/model/language_model.hpp"
#include "pgolf/nn/causal_attention.hpp"
#include "pgolf/nn/head.hpp"
#include "pgolf/nn/packed_qkv.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/nn/product.hpp"
#include "pgolf/nn/residual.hpp"
#include "pgolf/nn/rope.hpp"
#include "pgolf/nn/ssm_mixer.hpp"
#include "pgolf/nn/swiglu_mlp.hpp"
#include "pgolf/nn/token_embedding.hpp"
#include "pgolf/nn/weighted_norm.hpp"

namespace pgolf {

enum class BaselineMixer { transformer, transformer_rope, ssm };

inline constexpr int kBaselineHeads = 4;
inline constexpr int kBaselineSsmState = 16;

namespace baseline {
struct Embed {
  static constexpr const char* name = "embed.weight";
  template <class A>
  static constexpr Init init = {InitKind::normal, A::init_std};
};
struct Norm1 {
  static constexpr const char* name = "norm1.weight";
  static constexpr Scope scope = Scope::block;
};
struct Norm2 {
  static constexpr const char* name = "norm2.weight";
  static constexpr Scope scope = Scope::block;
};
struct NormF {
  static constexpr const char* name = "norm_f.weight";
  static constexpr Scope scope = Scope::global;
};
struct Qkv {
  static constexpr const char* name = "attn.qkv.weight";
  template <class A>
  static constexpr Init init = torch_linear_init(A::dim);
};
using AttnOut = Linear<"attn.o.weight", Reg::h, Reg::h, Width::dim, Width::dim, InitRule::fan_in>;
struct Ffn {
  static constexpr const char *gate = "ffn.w_gate.weight", *up = "ffn.w_up.weight", *down = "ffn.w_down.weight";
  template <class A>
  static constexpr Init init = {InitKind::normal, A::init_std};
};
using Head = Linear<"head.weight", Reg::n, Reg::h, Width::dim, Width::vocab, InitRule::normal, OptimGroup::adam_head,
                   Scope::global>;
}  // namespace baseline

// The baselines at a PRISM spec's sizes (D, L, vocab, SwiGLU hidden, tied head, norm eps, init std).
template <PrismSpec S, BaselineMixer X>
struct BaselineArch {
  static_assert(validate_prism_spec<S>());
  static_assert(X == BaselineMixer::ssm || S.d_model % kBaselineHeads == 0,
                "PrismSpec.d_model must be divisible by the Transformer baseline's 4 heads");
  static constexpr int vocab = S.vocab, dim = S.d_model, hidden = S.hidden();
  static constexpr int heads = kBaselineHeads, kv_heads = kBaselineHeads, head_dim = S.d_model / kBaselineHeads;
  static constexpr int kv_dim = S.d_model, rope_dims = head_dim, ssm_state = kBaselineSsmState;
  static constexpr double eps = S.norm_eps, rope_base = 10000.0, init_std = S.init_std;
  static constexpr Scope scalar_scope = Scope::block;
  static constexpr DepthPlan depth{.phase = {cyclic(S.layers, S.layers), {}}, .phases = 1, .unet = false};

  using Embedding = TokenEmbedding<baseline::Embed>;
  using Attention = cat_t<Program<PackedQkv<baseline::Qkv>>, when<X == BaselineMixer::transformer_rope, Rope>,
                          Program<CausalAttention<UnitGain>, Product<baseline::AttnOut>>>;
  using Mixer = std::conditional_t<X == BaselineMixer::ssm, Program<SsmMixer>, Attention>;
  using Embed = Program<Embedding>;
  using Block = cat_t<Program<WeightedNorm<baseline::Norm1>>, Mixer, Program<Residual, WeightedNorm<baseline::Norm2>,
                                                                          SwiGluMlp<baseline::Ffn>, Residual>>;
  using Head = Program<WeightedNorm<baseline::NormF>,
                       std::conditional_t<S.tie_embeddings, TiedHead<Embedding>, Product<baseline::Head>>, CrossEntropy>;
  using Skip = void;
  using RowOrder = Program<>;
};

template <PrismSpec S, BaselineMixer X>
constexpr auto baseline_param_table() {
  return arch_layout<BaselineArch<S, X>>().table;
}

template <PrismSpec S, BaselineMixer X, class T = float>
class PrismBaseline : public LanguageModel<BaselineArch<S, X>, Cpu<T>> {
 public:
  using LanguageModel<BaselineArch<S, X>, Cpu<T>>::LanguageModel;
};

}  // namespace pgolf
