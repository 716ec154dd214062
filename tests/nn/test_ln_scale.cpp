// The layerwise LN scale (nn/ln_scale.hpp, GptSpec.norm.ln_scale): the factor it applies at each
// virtual layer, by physical block or by virtual layer, and whole-model finite differences in
// double with it on (its own component check is in test_components.cpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
// Two physical blocks looped twice: virtual layers 0..3 run blocks 0, 1, 0, 1.
constexpr GptSpec kByLayer{.vocab = 64,
                           .dim = 32,
                           .depth = {.layers = 4, .loops = 2},
                           .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4},
                           .norm = {.ln_scale = LnScaleIndex::layer}};
constexpr GptSpec with_ln(GptSpec s, LnScaleIndex i) {
  s.norm.ln_scale = i;
  return s;
}
constexpr GptSpec kByBlock = with_ln(kByLayer, LnScaleIndex::block);
constexpr GptSpec kOff = with_ln(kByLayer, LnScaleIndex::off);
}  // namespace

TEST_CASE("LN scale is off in the baseline and follows each norm when on", "[forward][ln_scale]") {
  STATIC_REQUIRE(!program_contains<LnScale, GptArch<GptSpec{}>::Block>::value);
  using B = GptArch<kByLayer>::Block;
  STATIC_REQUIRE(std::is_same_v<At<B, 2>, LnScale>);  // ResidMix, PreNorm, LnScale, ...
  STATIC_REQUIRE(std::is_same_v<At<B, 9>, LnScale>);  // ..., PreNorm, LnScale, MLP
  // No tensor of its own: the table is the baseline block's.
  STATIC_REQUIRE(table_size(gpt_param_table<kByLayer>()) == table_size(gpt_param_table<kOff>()));
}

TEST_CASE("LN scale multiplies by 1/sqrt(i + 1), i the virtual layer or the physical block", "[forward][ln_scale]") {
  auto check = [](auto tag, double factor) {
    using C = typename decltype(tag)::type;
    const LoneInput in = case_input<C>(1, 4, 3);
    const LoneResult r = run_case<C>(in);
    const auto& x = in.in[std::size_t(Reg::n)];
    for (std::size_t e = 0; e < x.size(); ++e) {
      REQUIRE(r.out[std::size_t(Reg::n)][e] == Approx(factor * x[e]).epsilon(1e-15));
      REQUIRE(r.din[std::size_t(Reg::n)][e] == Approx(factor * in.weight[std::size_t(Reg::n)][e]).epsilon(1e-15));
    }
  };
  // Layer 2 of the lone run: virtual layer 2 and block 2 (factor 1/sqrt(3) either way) ...
  check(std::type_identity<Case<"ln", CaseArch, Program<LnScale>, 0, 2>>{}, 1 / std::sqrt(3.0));
  check(std::type_identity<Case<"ln", SharedArch, Program<LnScale>, 0, 2>>{}, 1 / std::sqrt(3.0));
  // ... and in a looped model the two differ: virtual layer 3 runs block 1.
  STATIC_REQUIRE(GptArch<kByLayer>::depth.phase[0][3] == 1);
  CHECK(LnScale::factor<GptArch<kByLayer>>(3, 1) == Approx(0.5));
  CHECK(LnScale::factor<GptArch<kByBlock>>(3, 1) == Approx(1 / std::sqrt(2.0)));
}

TEST_CASE("whole-model gradients with the LN scale match finite differences", "[gradcheck][ln_scale]") {
  auto gradcheck = [](auto model_tag) {
    using M = typename decltype(model_tag)::type;
    M model(2, 8);
    randomize(model, 4);
    const auto tokens = random_tokens(17, 64, 4);
    const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
    model.zero_grad();
    model.forward(x, y);
    model.backward();
    check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
  };
  SECTION("indexed by virtual layer") { gradcheck(std::type_identity<Gpt<kByLayer, double>>{}); }
  SECTION("indexed by physical block") { gradcheck(std::type_identity<Gpt<kByBlock, double>>{}); }
}

TEST_CASE("the LN scale changes the model only through its factors", "[forward][ln_scale]") {
  // With every factor 1 (a one-layer, one-block model) the loss equals the model without it.
  constexpr GptSpec on{.vocab = 64, .dim = 32, .depth = {.layers = 1},
                       .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 8}, .norm = {.ln_scale = LnScaleIndex::layer}};
  constexpr GptSpec off{.vocab = 64, .dim = 32, .depth = {.layers = 1}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 8}};
  Gpt<on, double> a(2, 8);
  Gpt<off, double> b(2, 8);
  randomize(a, 9);
  randomize(b, 9);
  const auto t = random_tokens(17, 64, 9);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  CHECK(a.forward(x, y) == b.forward(x, y));
  Gpt<kByLayer, double> c(2, 8);
  randomize(c, 9);
  Gpt<kOff, double> d(2, 8);
  randomize(d, 9);
  CHECK(c.forward(x, y) != d.forward(x, y));
}
