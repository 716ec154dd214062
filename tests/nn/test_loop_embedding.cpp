// Loop-position embeddings (nn/loop_embedding.hpp, GptSpec.depth.loop_embedding), the per-loop U-Net
// split they come with in the Frugendorff (GptSpec.depth.skips_per_loop, DepthPlan) and NTK-scaled
// RoPE (GptSpec.attention.rope_train_seq_len): where each acts, the inits, and whole-model finite
// differences in double (the lone component checks are in test_components.cpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kLoop{.vocab = 64,
                        .dim = 32,
                        .depth = {.layers = 6, .loops = 2, .loop_embedding = LoopEmbedding::random},
                        .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
constexpr GptSpec with_depth(GptSpec s, LoopEmbedding e, bool per_loop) {
  s.depth.loop_embedding = e;
  s.depth.skips_per_loop = per_loop;
  return s;
}
constexpr GptSpec kLoopOrtho = with_depth(kLoop, LoopEmbedding::orthogonal, true);
constexpr GptSpec kLoopOff = with_depth(kLoop, LoopEmbedding::off, false);

template <class M>
void model_gradcheck(std::uint32_t seed, int seq = 8) {
  M model(2, seq);
  randomize(model, seed);
  const auto tokens = random_tokens(std::size_t(2 * seq + 1), M::kVocab, seed);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
}
}  // namespace

TEST_CASE("loop positions sit first in the block and only in looped models", "[forward][loop_embedding]") {
  STATIC_REQUIRE(!program_contains<LoopPositions, GptArch<GptSpec{}>::Block>::value);
  STATIC_REQUIRE(!program_contains<LoopPositions, GptArch<kLoopOff>::Block>::value);
  STATIC_REQUIRE(std::is_same_v<At<GptArch<kLoop>::Block, 0>, LoopPositions>);
  constexpr auto table = gpt_param_table<kLoop>();
  const ParamInfo* p = find_param(table, "loop_pos");
  REQUIRE(p != nullptr);
  CHECK(p->rows == 2);
  CHECK(p->cols == 32);
  CHECK(p->group == OptimGroup::adam_scalar);
  CHECK(p->export_policy == ExportPolicy::float16);
  CHECK(table_size(table) == table_size(gpt_param_table<kLoopOff>()) + 64);
  // Loop l starts at virtual layer 3 l (6 layers, 2 loops).
  using A = GptArch<kLoop>;
  CHECK(LoopPositions::loop_started<A>(0) == 0);
  CHECK(LoopPositions::loop_started<A>(3) == 1);
  CHECK(LoopPositions::loop_started<A>(1) == -1);
  CHECK(LoopPositions::loop_started<A>(5) == -1);
}

TEST_CASE("loop positions add p[l] at a loop's first layer and nothing elsewhere", "[forward][loop_embedding]") {
  auto check = [](auto tag, int loop) {
    using C = typename decltype(tag)::type;
    const LoneInput in = case_input<C>(2, 4, 11);
    const LoneResult r = run_case<C>(in);
    using LA = LoneArch<typename C::Arch, typename C::Run>;
    constexpr auto table = arch_layout<LA>().table;
    const ParamInfo* p = find_param(table, "loop_pos");
    REQUIRE(p != nullptr);
    const auto& x = in.in[std::size_t(Reg::x)];
    const auto& R = in.weight[std::size_t(Reg::x)];
    const int D = C::Arch::dim;
    for (std::size_t e = 0; e < x.size(); ++e) {
      const double add = loop < 0 ? 0.0 : in.params[p->offset + std::size_t(loop) * D + e % D];
      REQUIRE(r.out[std::size_t(Reg::x)][e] == add + x[e]);
      REQUIRE(r.din[std::size_t(Reg::x)][e] == R[e]);  // the stream's gradient passes
    }
    for (int c = 0; c < D; ++c) {
      double want = 0;
      for (std::size_t n = 0; n < 8; ++n) want += R[n * D + c];
      const double got = r.grads[p->offset + std::size_t(loop < 0 ? 1 : loop) * D + c];
      REQUIRE(got == Approx(loop < 0 ? 0.0 : want).margin(1e-14));
    }
  };
  check(std::type_identity<At<Cases, index_in<Case<"loop_positions (loop start)", LoopArch, Program<LoopPositions>, 0, 2>, Cases>()>>{}, 1);
  check(std::type_identity<Case<"inside", LoopArch, Program<LoopPositions>, 0, 1>>{}, -1);
}

TEST_CASE("the orthogonal loop-position init has orthogonal rows of norm std", "[forward][loop_embedding]") {
  Gpt<kLoopOrtho, double> m(1, 4);
  m.init(1337);
  const double* p = m.param("loop_pos");
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      double dot = 0;
      for (int c = 0; c < 32; ++c) dot += p[a * 32 + c] * p[b * 32 + c];
      CHECK(dot == Approx(a == b ? 1e-4 : 0.0).margin(1e-18));
    }
  Gpt<kLoop, double> r(1, 4);
  r.init(1337);
  double sq = 0;
  for (int e = 0; e < 64; ++e) sq += r.param("loop_pos")[e] * r.param("loop_pos")[e];
  CHECK(std::sqrt(sq / 64) == Approx(0.01).epsilon(0.3));  // N(0, 0.01^2) draws
}

TEST_CASE("per-loop U-Net skips: each loop has its own encoder/decoder split", "[forward][loop_embedding]") {
  constexpr DepthPlan whole = kLoop.depth_plan(), per = kLoopOrtho.depth_plan();
  // 6 virtual layers: one split 3 | 3 (skips 2->3, 1->4, 0->5) ...
  CHECK(whole.max_skips() == 3);
  CHECK(whole.skip_into(0, 3) == 0);
  CHECK(whole.skip_source(0, 3) == 2);
  CHECK(whole.skip_source(0, 5) == 0);
  // ... or two loops of 3 layers, each split 1 | 2 with one skip (0->1, 3->4), weights shared.
  CHECK(per.max_skips() == 1);
  CHECK(per.skip_into(0, 1) == 0);
  CHECK(per.skip_source(0, 1) == 0);
  CHECK(per.skip_into(0, 4) == 0);
  CHECK(per.skip_source(0, 4) == 3);
  CHECK(per.skip_into(0, 2) == -1);
  CHECK(per.skip_into(0, 5) == -1);
  CHECK(per.skip_from(0, 3) == 0);
  CHECK(per.skip_from(0, 0) == 0);
  CHECK(per.skip_from(0, 2) == -1);
  CHECK(table_size(gpt_param_table<kLoopOrtho>()) == table_size(gpt_param_table<kLoop>()) - 2 * 32);
}

TEST_CASE("whole-model gradients with loop positions match finite differences", "[gradcheck][loop_embedding]") {
  SECTION("random init, one U-Net split") { model_gradcheck<Gpt<kLoop, double>>(3); }
  SECTION("orthogonal init, skips per loop") { model_gradcheck<Gpt<kLoopOrtho, double>>(5); }
}

namespace {
constexpr GptSpec kNtk{.vocab = 64,
                       .dim = 32,
                       .depth = {.layers = 2},
                       .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 8, .rope_train_seq_len = 4}};
constexpr GptSpec with_rope(GptSpec s, int train, double base) {
  s.attention.rope_train_seq_len = train;
  s.attention.rope_base = base;
  return s;
}
constexpr GptSpec kNtkAsBase = with_rope(kNtk, 0, 10000.0 * 2.519842099789746);  // 2^(4/3)
}  // namespace

TEST_CASE("NTK RoPE scales the base only beyond the training length", "[forward][rope]") {
  using A = GptArch<kNtk>;
  CHECK(rope_base_at<A>(4) == 10000.0);
  CHECK(rope_base_at<A>(2) == 10000.0);
  CHECK(rope_base_at<A>(8) == Approx(10000.0 * std::pow(2.0, 8.0 / 6.0)).epsilon(1e-15));
  // The Frugendorff: rope dims 16, train length 1024, evaluated at 2048: base ~22,082.
  constexpr GptSpec frug = with_rope(GptSpec{.attention = {.rope_dims = 16}}, 1024, 10000.0);
  CHECK(rope_base_at<GptArch<frug>>(2048) == Approx(22082).epsilon(1e-4));
  CHECK(rope_base_at<GptArch<GptSpec{}>>(100000) == 10000.0);  // off by default

  // A scaled model at seq 8 is the unscaled model with the scaled base; at seq 4 it is the plain one.
  constexpr GptSpec plain = with_rope(kNtk, 0, 10000.0);
  const double scaled_base = 10000.0 * std::pow(2.0, 8.0 / 6.0);
  auto loss = [](auto tag, int seq, std::uint32_t seed) {
    using M = typename decltype(tag)::type;
    M m(1, seq);
    randomize(m, seed);
    const auto t = random_tokens(std::size_t(seq + 1), 64, seed);
    return m.forward(std::vector<std::int32_t>(t.begin(), t.end() - 1), std::vector<std::int32_t>(t.begin() + 1, t.end()));
  };
  CHECK(loss(std::type_identity<Gpt<kNtk, double>>{}, 4, 3) == loss(std::type_identity<Gpt<plain, double>>{}, 4, 3));
  CHECK(loss(std::type_identity<Gpt<kNtk, double>>{}, 8, 3) != loss(std::type_identity<Gpt<plain, double>>{}, 8, 3));
  // The same base written as a spec constant: equal to rounding.
  CHECK(scaled_base == Approx(10000.0 * 2.519842099789746).epsilon(1e-15));
  CHECK(loss(std::type_identity<Gpt<kNtk, double>>{}, 8, 3) ==
        Approx(loss(std::type_identity<Gpt<kNtkAsBase, double>>{}, 8, 3)).epsilon(1e-12));
}
