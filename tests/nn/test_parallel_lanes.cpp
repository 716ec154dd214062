// The parallel two-lane residual (nn/parallel_lanes.hpp, GptSpec.residual.parallel_from): where the
// lanes start in each schedule, the lane update's formula, and whole-model finite differences in
// double (the lone component checks are in test_components.cpp).
#include <catch2/catch.hpp>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kLanes{.vocab = 64,
                         .dim = 32,
                         .depth = {.layers = 4},
                         .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4},
                         .residual = {.parallel_from = 2}};
// The records' shape in miniature: 5 blocks, the span 1..2 run three times once the loop is on, the
// lanes from block 3 (layers 3, 4 unlooped; 7, 8 looped), LN scale by block, LeakyReLU^2.
constexpr GptSpec kLanesLooped{
    .vocab = 64,
    .dim = 32,
    .depth = {.layers = 5, .looped = repeat_span(5, 1, 2, 3)},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .qk_gain_init = 5.0},
    .mlp = {.mult = 4, .activation = Activation::leaky_relu2},
    .norm = {.ln_scale = LnScaleIndex::block},
    .residual = {.parallel_from = 3}};
constexpr GptSpec with_parallel(GptSpec s, int from) {
  s.residual.parallel_from = from;
  return s;
}
constexpr GptSpec kAllParallel = with_parallel(kLanes, 0);
constexpr GptSpec kSerial = with_parallel(kLanes, -1);

template <class M>
void model_gradcheck(M& model, std::uint32_t seed, int seq = 8) {
  randomize(model, seed);
  const auto tokens = random_tokens(std::size_t(2 * seq + 1), M::kVocab, seed);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
}
}  // namespace

TEST_CASE("the lanes start at the first layer of the chosen block in each schedule", "[forward][parallel_lanes]") {
  STATIC_REQUIRE(GptArch<GptSpec{}>::ParallelBlock::size == 0);
  STATIC_REQUIRE(!program_contains<LaneMean, GptArch<GptSpec{}>::Head>::value);
  STATIC_REQUIRE(std::is_same_v<At<GptArch<kLanes>::Head, 0>, LaneMean>);
  STATIC_REQUIRE(std::is_same_v<At<GptArch<kLanes>::ParallelBlock, 0>, LaneMixNorm>);
  STATIC_REQUIRE(GptArch<kLanes>::parallel_start[0] == 2);
  STATIC_REQUIRE(GptArch<kAllParallel>::parallel_start[0] == 0);
  // Unlooped [0,1,2,3,4]: from layer 3; looped [0,1,2,1,2,1,2,3,4]: from layer 7.
  STATIC_REQUIRE(GptArch<kLanesLooped>::parallel_start[0] == 3);
  STATIC_REQUIRE(GptArch<kLanesLooped>::parallel_start[1] == 7);
  constexpr auto table = gpt_param_table<kLanes>();
  const ParamInfo* post = find_param(table, "parallel_post_lambdas");
  const ParamInfo* resid = find_param(table, "parallel_resid_lambdas");
  REQUIRE(post != nullptr);
  REQUIRE(resid != nullptr);
  CHECK(post->numel() == 4 * 4);
  CHECK(resid->numel() == 4 * 2);
  CHECK(post->export_policy == ExportPolicy::float16);
  CHECK(table_size(table) == table_size(gpt_param_table<kSerial>()) + 24);
}

TEST_CASE("the lane update: x := r0 x + P00 A + P10 M, x1 := r1 x1 + P01 A + P11 M", "[forward][parallel_lanes]") {
  using C = Case<"lane_merge", LanesArch, Program<LaneMerge>, 128, 1, true, Program<ScaledResidual<MlpScale>>>;
  const LoneInput in = case_input<C>(1, 3, 21);
  const LoneResult r = run_case<C>(in);
  using LA = LoneArch<C::Arch, C::Run, C::Table>;
  constexpr auto table = arch_layout<LA>().table;
  const double* P = in.params.data() + find_param(table, "parallel_post_lambdas")->offset + 4;  // block 1
  const double* R = in.params.data() + find_param(table, "parallel_resid_lambdas")->offset + 2;
  const double* ms = in.params.data() + find_param(table, "blocks.1.mlp_scale")->offset;
  const auto &x = in.in[std::size_t(Reg::x)], &x1 = in.in[std::size_t(Reg::x1)];
  const auto &a = in.in[std::size_t(Reg::a)], &h = in.in[std::size_t(Reg::h)];
  for (std::size_t e = 0; e < x.size(); ++e) {
    const double M = ms[e % 128] * h[e];
    CHECK(r.out[std::size_t(Reg::x)][e] == Approx(R[0] * x[e] + P[0] * a[e] + P[2] * M).epsilon(1e-14));
    CHECK(r.out[std::size_t(Reg::x1)][e] == Approx(R[1] * x1[e] + P[1] * a[e] + P[3] * M).epsilon(1e-14));
  }
}

TEST_CASE("whole-model gradients with parallel lanes match finite differences", "[gradcheck][parallel_lanes]") {
  SECTION("lanes from layer 2 of 4") {
    Gpt<kLanes, double> m(2, 8);
    model_gradcheck(m, 3);
  }
  SECTION("every layer parallel") {
    Gpt<kAllParallel, double> m(2, 8);
    model_gradcheck(m, 4);
  }
  SECTION("a looped span, lanes from block 3, both schedules") {
    Gpt<kLanesLooped, double> m(2, 8);
    model_gradcheck(m, 5);
    m.set_phase(1);
    model_gradcheck(m, 6);
  }
}
