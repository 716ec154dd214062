// The shared value embedding (nn/value_embedding.hpp, GptSpec.attention.ve_dim): its place and
// tensors, its formula at a block that uses it and its identity elsewhere, and whole-model finite
// differences in double alone and with looping (its lone component checks run from
// component_cases.hpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kVeAlone{.vocab = 64,
                           .dim = 32,
                           .depth = {.layers = 3},
                           .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .ve_dim = 8,
                                         .ve_blocks = blocks_of(1, 2)}};
// Two blocks looped twice: block 1 (virtual layers 1 and 3) uses ve.
constexpr GptSpec kVeLooped{.vocab = 64,
                            .dim = 32,
                            .depth = {.layers = 4, .loops = 2},
                            .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .ve_dim = 8,
                                          .ve_blocks = last_blocks(1)}};
constexpr GptSpec kVeOff{.vocab = 64, .dim = 32, .depth = {.layers = 3}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
// The records' orthogonal init (kv_dim 128, ve_dim 64), 6 blocks.
constexpr GptSpec kVeOrtho{.vocab = 256,
                           .dim = 256,
                           .depth = {.layers = 6},
                           .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 16, .ve_dim = 64,
                                         .ve_blocks = blocks_of(2, 3)},
                           .init = {.orthogonal = true}};

template <class M>
void gradcheck_model(std::uint32_t seed) {
  M model(2, 8);
  randomize(model, seed);
  const auto tokens = random_tokens(17, M::kVocab, seed);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
}
}  // namespace

TEST_CASE("value embedding is off by default and follows QkNormRope when on", "[forward][value_embedding]") {
  STATIC_REQUIRE(!program_contains<ValueEmbedding, GptArch<GptSpec{}>::Block>::value);
  using B = GptArch<kVeAlone>::Block;  // ResidMix, PreNorm, QkvProduct, QkNormRope, ValueEmbedding, attention
  STATIC_REQUIRE(std::is_same_v<At<B, 3>, QkNormRope>);
  STATIC_REQUIRE(std::is_same_v<At<B, 4>, ValueEmbedding>);
  STATIC_REQUIRE(std::is_same_v<At<B, 5>, CausalAttention<>>);
  // Eve [64, 8] + Pve [16, 8] + sigma + one lambda per member block (2).
  STATIC_REQUIRE(table_size(gpt_param_table<kVeAlone>()) ==
                 table_size(gpt_param_table<kVeOff>()) + 64 * 8 + 16 * 8 + 1 + 2);
  STATIC_REQUIRE(ValueEmbedding::count<GptArch<kVeLooped>>() == 1);
  STATIC_REQUIRE(ValueEmbedding::member<GptArch<kVeAlone>>(0) == -1);
  STATIC_REQUIRE(ValueEmbedding::member<GptArch<kVeAlone>>(2) == 1);
  using M = Gpt<kVeAlone, double>;
  const auto& e = M::row("ve_shared.embed.weight");
  CHECK((e.rows == 64 && e.cols == 8 && e.group == OptimGroup::adam_embed && e.scope == Scope::global));
  CHECK(e.init.kind == InitKind::normal);
  CHECK(e.init.value == 0.01);
  const auto& p = M::row("ve_shared.proj.weight");
  CHECK((p.rows == 16 && p.cols == 8 && p.group == OptimGroup::muon_matrix));
  CHECK(p.init.kind == InitKind::uniform_fan_in);  // PyTorch's Linear init over ve_dim
  CHECK(p.init.value == 8.0);
  const auto& s = M::row("ve_shared.scale");
  CHECK((s.rows == 1 && s.init.kind == InitKind::constant && s.init.value == 0.1 && s.group == OptimGroup::adam_scalar));
  CHECK(s.export_policy == ExportPolicy::float32_control);
  const auto& l = M::row("ve_layer_scales");
  CHECK((l.rows == 2 && l.init.kind == InitKind::ones && l.group == OptimGroup::adam_scalar));
  CHECK(l.export_policy == ExportPolicy::float32_control);
  // Orthogonal init scaled by 1/sqrt(2 * physical blocks).
  const auto& o = Gpt<kVeOrtho, double>::row("ve_shared.proj.weight");
  CHECK(o.init.kind == InitKind::orthogonal);
  CHECK(o.init.value == Approx(1 / std::sqrt(12.0)).epsilon(1e-15));
}

TEST_CASE("value embedding adds lambda_i sigma Eve[ids] Pve^T to v at its blocks only", "[forward][value_embedding]") {
  using C = Case<"ve", VeArch, Program<ValueEmbedding>>;  // layer 1 = block 1, ve_blocks {0, 1}: lambda[1]
  const LoneInput in = case_input<C>(2, 5, 3);
  const LoneResult r = run_case<C>(in);
  using LA = LoneArch<VeArch, Program<ValueEmbedding>>;
  constexpr auto table = arch_layout<LA>().table;
  const double* eve = in.params.data() + find_param(table, "ve_shared.embed.weight")->offset;
  const double* pve = in.params.data() + find_param(table, "ve_shared.proj.weight")->offset;
  const double sigma = in.params[find_param(table, "ve_shared.scale")->offset];
  const double lambda = in.params[find_param(table, "ve_layer_scales")->offset + 1];
  const int K = VeArch::kv_dim, E = kCaseVe.attention.ve_dim;
  const auto& v = in.in[std::size_t(Reg::v)];
  double dsigma = 0;
  for (std::size_t n = 0; n < in.ids.size(); ++n)
    for (int o = 0; o < K; ++o) {
      double raw = 0;
      for (int k = 0; k < E; ++k) raw += eve[std::size_t(in.ids[n]) * E + k] * pve[std::size_t(o) * E + k];
      const std::size_t at = n * K + o;
      REQUIRE(r.out[std::size_t(Reg::v)][at] == Approx(v[at] + lambda * sigma * raw).epsilon(1e-13));
      REQUIRE(r.din[std::size_t(Reg::v)][at] == in.weight[std::size_t(Reg::v)][at]);  // dv passes
      dsigma += lambda * raw * in.weight[std::size_t(Reg::v)][at];
    }
  CHECK(r.grads[find_param(table, "ve_shared.scale")->offset] == Approx(dsigma).epsilon(1e-12));
  CHECK(r.grads[find_param(table, "ve_layer_scales")->offset] == 0.0);  // block 0's lambda: not this layer

  // Layer 2 runs block 2, not in ve_blocks: v passes and no tensor gets gradient.
  using D = Case<"ve off", VeArch, Program<ValueEmbedding>, 0, 2>;
  const LoneInput in2 = case_input<D>(2, 5, 3);
  const LoneResult r2 = run_case<D>(in2);
  CHECK(r2.out[std::size_t(Reg::v)] == in2.in[std::size_t(Reg::v)]);
  CHECK(r2.din[std::size_t(Reg::v)] == in2.weight[std::size_t(Reg::v)]);
  for (double g : r2.grads) REQUIRE(g == 0.0);
}

TEST_CASE("whole-model gradients with the value embedding match finite differences", "[gradcheck][value_embedding]") {
  SECTION("alone, on two of three blocks") { gradcheck_model<Gpt<kVeAlone, double>>(4); }
  SECTION("looped twice, on the second block (two uses)") { gradcheck_model<Gpt<kVeLooped, double>>(5); }
}
