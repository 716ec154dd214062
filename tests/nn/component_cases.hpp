// The runs of components the parity and finite-difference tests cover: every GPT component alone
// and the consecutive runs a backend fuses, at a small CUDA-compatible size (head dim 32, vocabulary
// 256), and the PRISM harness's baseline components (CPU only).
#pragma once

#include <string_view>

#include "../test_util.hpp"
#include "lone_run.hpp"
#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/model/prism_baselines.hpp"

namespace pgolf::test {

inline constexpr GptSpec kCaseSpec{.vocab = 256,
                                   .dim = 128,
                                   .depth = {.layers = 3},
                                   .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16, .qk_gain_init = 1.7},
                                   .mlp = {.mult = 3, .activation = Activation::leaky_relu2},
                                   .head = {.softcap = 15.0},
                                   .norm = {.ln_scale = LnScaleIndex::layer}};
// Per-virtual-layer scalars and the LN scale by physical block.
inline constexpr GptSpec kCaseShared{.vocab = 256,
                                     .dim = 128,
                                     .depth = {.layers = 3, .sharing = Sharing::matrices},
                                     .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 32},
                                     .norm = {.ln_scale = LnScaleIndex::block}};
// Two loops of a cyclic schedule with loop-position embeddings (the lone run's layer 2 starts loop 1).
inline constexpr GptSpec kCaseLoop{.vocab = 256,
                                   .dim = 128,
                                   .depth = {.layers = 4, .loops = 2, .loop_embedding = LoopEmbedding::random},
                                   .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16}};
using CaseArch = GptArch<kCaseSpec>;
using LoopArch = GptArch<kCaseLoop>;
// The parallel two-lane residual from block 1 (the lone run's layer 1 runs block 1).
inline constexpr GptSpec kCaseLanes{.vocab = 256,
                                    .dim = 128,
                                    .depth = {.layers = 3},
                                    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16},
                                    .residual = {.parallel_from = 1}};
using LanesArch = GptArch<kCaseLanes>;
// The shared value embedding on blocks 0 and 1 (the lone run's layer 1 uses ve_layer_scales[1]; layer
// 2 passes v), and the asymmetric softcap with a small cap so both caps shape the logits.
inline constexpr GptSpec kCaseVe{.vocab = 256,
                                 .dim = 128,
                                 .depth = {.layers = 3},
                                 .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16, .ve_dim = 32,
                                               .ve_blocks = blocks_of(0, 1)},
                                 .head = {.softcap = 2.0, .asym_softcap = true}};
using VeArch = GptArch<kCaseVe>;
// The embedding side's techniques (BigramHash with a projection, the SmearGate forms with the BOS
// fix) over a vocabulary of 8, so the BOS token (1) and repeated buckets occur in every case's ids;
// and without the projection (bigram_dim = dim) or the BOS fix.
inline constexpr GptSpec kEmbedCase{.vocab = 8,
                                    .dim = 128,
                                    .depth = {.layers = 3},
                                    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16},
                                    .embedding = {.bigram_buckets = 16, .bigram_dim = 32, .bigram_scale_init = 0.3,
                                                  .smear = true, .smear_channels = 12}};
inline constexpr GptSpec kEmbedCasePlain{.vocab = 8,
                                         .dim = 128,
                                         .depth = {.layers = 3},
                                         .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16},
                                         .embedding = {.bigram_buckets = 5, .bigram_dim = 128, .smear = true,
                                                       .smear_channels = 20, .smear_bos_fix = false}};
using EmbedArch = GptArch<kEmbedCase>;
using EmbedPlainArch = GptArch<kEmbedCasePlain>;
// XSA on block 1 of the three (the lone runs run at block 1 by default; block 2 is an identity) and
// SparseAttnGate on the first 12 channels, per block; the same with per-virtual-layer scalars.
inline constexpr GptSpec kCaseXsaGate{.vocab = 256,
                                      .dim = 128,
                                      .depth = {.layers = 3},
                                      .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16, .qk_gain_init = 1.7,
                                                    .xsa = blocks_of(1), .gate_channels = 12},
                                      .norm = {.ln_scale = LnScaleIndex::layer}};
inline constexpr GptSpec kCaseXsaGateShared{.vocab = 256,
                                            .dim = 128,
                                            .depth = {.layers = 3, .sharing = Sharing::matrices},
                                            .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 32,
                                                          .xsa = all_blocks(), .gate_channels = 20,
                                                          .gate_scale = 1.0}};
using XsaGateArch = GptArch<kCaseXsaGate>;
using XsaGateSharedArch = GptArch<kCaseXsaGateShared>;
using SharedArch = GptArch<kCaseShared>;
using BaseArch = BaselineArch<prism_presets::toy(18), BaselineMixer::transformer_rope>;
using SsmArch = BaselineArch<prism_presets::toy(18), BaselineMixer::ssm>;

template <std::size_t N>
struct fixed_name {
  char s[N]{};
  constexpr fixed_name(const char (&v)[N]) {  // NOLINT: implicit, from a string literal
    for (std::size_t i = 0; i < N; ++i) s[i] = v[i];
  }
  constexpr std::string_view view() const { return {s, N - 1}; }
};

// name, architecture, run, the width of h when the run reads it, the layer it runs at, whether CUDA
// runs it, components that only join the table, and whether the run ends in a loss (its writes are
// then internal).
template <fixed_name Name, class A, class P, int HWidth = 0, int Layer = 1, bool OnCuda = true,
          class Extra = Program<>, bool Loss = false>
struct Case {
  static constexpr std::string_view name = Name.view();
  using Arch = A;
  using Run = P;
  using Table = Extra;
  static constexpr int h_width = HWidth, layer = Layer;
  static constexpr bool cuda = OnCuda;
  static constexpr Regs outputs = Loss ? Regs(0) : lone_outputs<P>();
};

template <class C>
LoneResult run_case(const LoneInput& in, bool backward = true) {
  return run_lone<typename C::Arch, typename C::Run, Cpu<double>, typename C::Table, C::outputs>(in, backward);
}
template <class C, class T>
LoneResult run_case_on(const LoneInput& in) {
  return run_lone<typename C::Arch, typename C::Run, Cpu<T>, typename C::Table, C::outputs>(in);
}

using Emb = TokenEmbedding<GptTokEmb>;
using Cases = Program<
    Case<"resid_mix", CaseArch, Program<ResidMix>>,
    Case<"pre_norm", CaseArch, Program<PreNorm>>,
    Case<"stream_norm", CaseArch, Program<StreamNorm>>,
    Case<"resid_mix+pre_norm", CaseArch, Program<ResidMix, PreNorm>>,
    Case<"qkv_product+qk_norm_rope", CaseArch, Program<QkvProduct, QkNormRope>>,
    Case<"qkv_product+qk_norm_rope (full RoPE)", SharedArch, Program<QkvProduct, QkNormRope>>,
    Case<"causal_attention", CaseArch, Program<CausalAttention<>>>,
    Case<"causal_attention (per-layer gain)", SharedArch, Program<CausalAttention<>>>,
    Case<"causal_attention (documents)", EmbedArch, Program<CausalAttention<LearnedGain, 1>>>,  // BOS = 1 of 8 ids
    Case<"attn.proj", CaseArch, Program<Product<GptAttnOut>>, 128>,
    Case<"mlp.fc", CaseArch, Program<Product<GptMlpUp>>>,
    Case<"mlp.proj", CaseArch, Program<Product<GptMlpDown>>, 384>,
    Case<"lm_head", CaseArch, Program<Product<GptLmHead>>>,
    Case<"tied_head", CaseArch, Program<TiedHead<Emb>>, 0, 1, true, Program<Emb>>,
    Case<"relu2", CaseArch, Program<ActivationOf<Activation::relu2>>, 384>,
    Case<"leaky_relu2", CaseArch, Program<ActivationOf<Activation::leaky_relu2>>, 384>,
    Case<"attn_scale", CaseArch, Program<ScaledResidual<AttnScale>>, 128>,
    Case<"mlp_scale (per layer)", SharedArch, Program<ScaledResidual<MlpScale>>, 128, 2>,
    Case<"attn_scale+pre_norm", CaseArch, Program<ScaledResidual<AttnScale>, PreNorm>, 128>,
    Case<"ln_scale (layer)", CaseArch, Program<LnScale>, 0, 2>,
    Case<"ln_scale (block)", SharedArch, Program<LnScale>, 0, 2>,
    Case<"pre_norm+ln_scale", CaseArch, Program<PreNorm, LnScale>, 0, 2>,
    Case<"loop_positions (loop start)", LoopArch, Program<LoopPositions>, 0, 2>,
    Case<"loop_positions (inside a loop)", LoopArch, Program<LoopPositions>, 0, 1>,
    Case<"lane_mix_norm", LanesArch, Program<LaneMixNorm>, 0, 1, true, Program<ResidMix>>,
    Case<"branch_stash", LanesArch, Program<BranchStash>, 128, 1, true, Program<ScaledResidual<AttnScale>>>,
    Case<"lane_norm", LanesArch, Program<LaneNorm>>,
    Case<"lane_merge", LanesArch, Program<LaneMerge>, 128, 1, true, Program<ScaledResidual<MlpScale>>>,
    Case<"lane_mean", LanesArch, Program<LaneMean>>,
    Case<"softcap+cross_entropy", CaseArch, Program<Softcap, CrossEntropy>, 256, 1, true, Program<>, true>,
    Case<"xsa", XsaGateArch, Program<Xsa>, 128>,
    Case<"xsa (off block)", XsaGateArch, Program<Xsa>, 128, 2>,
    Case<"sparse_attn_gate", XsaGateArch, Program<SparseAttnGate>, 128>,
    Case<"sparse_attn_gate (per layer)", XsaGateSharedArch, Program<SparseAttnGate>, 128, 2>,
    Case<"causal_attention+xsa+sparse_attn_gate", XsaGateArch, Program<CausalAttention<>, Xsa, SparseAttnGate>>,
    Case<"causal_attention+xsa (off block)", XsaGateArch, Program<CausalAttention<>, Xsa>, 0, 2>,
    Case<"qkv_product+qk_norm_rope+sparse_attn_gate", XsaGateArch, Program<QkvProduct, QkNormRope, SparseAttnGate>,
         128>,
    Case<"qkv_product+qk_norm_rope+sparse_attn_gate (per layer)", XsaGateSharedArch,
         Program<QkvProduct, QkNormRope, SparseAttnGate>, 128, 2>,
    Case<"token_embedding", CaseArch, Program<Emb>>,
    Case<"value_embedding", VeArch, Program<ValueEmbedding>>,
    Case<"value_embedding (block without)", VeArch, Program<ValueEmbedding>, 0, 2>,
    Case<"qkv_product+qk_norm_rope+value_embedding", VeArch, Program<QkvProduct, QkNormRope, ValueEmbedding>>,
    Case<"asym_softcap", VeArch, Program<AsymSoftcap>, 256, 1, false>,
    Case<"asym_softcap+cross_entropy", VeArch, Program<AsymSoftcap, CrossEntropy>, 256, 1, true, Program<>, true>,
    Case<"embedding side", CaseArch, Program<Emb, StreamNorm, Anchor>>,
    Case<"bigram_hash", EmbedArch, Program<BigramHash>>,
    Case<"bigram_hash (no projection)", EmbedPlainArch, Program<BigramHash>>,
    Case<"smear_gate", EmbedArch, Program<SmearGate>>,
    Case<"smear_gate (no BOS fix)", EmbedPlainArch, Program<SmearGate>>,
    Case<"smear_gate_linear", EmbedArch, Program<SmearGateLinear>>,
    Case<"smear_gate_linear (no BOS fix)", EmbedPlainArch, Program<SmearGateLinear>>,
    Case<"embedding side (bigram, linear smear)", EmbedArch, Program<Emb, BigramHash, SmearGateLinear, StreamNorm, Anchor>>,
    Case<"embedding side (bigram, smear)", EmbedPlainArch, Program<Emb, BigramHash, StreamNorm, SmearGate, Anchor>>,
    Case<"weighted_norm", BaseArch, Program<WeightedNorm<baseline::Norm1>>, 0, 1, false>,
    Case<"packed_qkv+rope", BaseArch, Program<PackedQkv<baseline::Qkv>, Rope>, 0, 1, false>,
    Case<"unit-gain attention", BaseArch, Program<CausalAttention<UnitGain>>, 0, 1, false>,
    Case<"residual", BaseArch, Program<Residual>, 64, 1, false>,
    Case<"swiglu_mlp", BaseArch, Program<SwiGluMlp<baseline::Ffn>>, 0, 1, false>,
    Case<"ssm_mixer", SsmArch, Program<SsmMixer>, 0, 1, false>,
    Case<"cross_entropy", BaseArch, Program<CrossEntropy>, 18, 1, false, Program<>, true>>;

// Random inputs, output weights, tensors (the reference init plus noise on every tensor, so zero
// projections and unit scales hide no path), tokens and targets (a fifth unscored) for a case.
template <class C>
LoneInput case_input(int batch, int seq, std::uint32_t seed) {
  using A = typename C::Arch;
  using LA = LoneArch<A, typename C::Run, typename C::Table>;
  constexpr Regs in = lone_inputs<typename C::Run>(), out = C::outputs;
  LoneInput x;
  x.batch = batch, x.seq = seq, x.layer = C::layer, x.grad_scale = 0.75;
  const std::size_t N = std::size_t(batch) * seq;
  for (std::size_t i = 0; i < N; ++i) {
    x.ids.push_back(std::int32_t(uniform01(seed, 1, i) * A::vocab));
    x.targets.push_back(i % 5 == 3 ? -1 : std::int32_t(uniform01(seed, 2, i) * A::vocab));
  }
  const std::array<int, kRegCount> widths{A::dim, A::dim, A::dim, C::h_width, A::dim, A::kv_dim, A::kv_dim, A::dim, A::dim};
  for (int r = 0; r < kRegCount; ++r) {
    if (has(in, Reg(r))) {
      x.width[std::size_t(r)] = widths[std::size_t(r)];
      x.in[std::size_t(r)] = randn(N * std::size_t(widths[std::size_t(r)]), seed * 16 + std::uint32_t(r));
    }
    if (has(out, Reg(r))) {
      const int w = register_width<typename C::Run, LA>(Reg(r));
      x.weight[std::size_t(r)] = randn(N * std::size_t(w), seed * 16 + 8 + std::uint32_t(r), 0.1);
    }
  }
  constexpr auto table = arch_layout<LA>().table;
  x.params.resize(table_size(table));
  init_params<double>(table, 7, std::span<double>(x.params));
  for (const auto& p : table) {
    const double s = p.rank == 2 && p.rows != 2 ? 1.0 / std::sqrt(double(p.cols)) : 0.3;
    for (std::size_t i = 0; i < p.numel(); ++i)
      x.params[p.offset + i] += s * normal01(seed, name_stream(p.name.view()), i);
  }
  return x;
}

template <class F>
void for_each_case(F&& f) {
  for_types<Cases>(f);
}

}  // namespace pgolf::test
