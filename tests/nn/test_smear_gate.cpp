// SmearGate (nn/smear_gate.hpp, GptSpec.embedding.smear*): both forms against their formulas at row
// starts and BOS positions, the BOS fix (off lets the previous document into a BOS, on does not),
// their tensors and placement, finite differences of each alone with BOS tokens in the rows, and
// whole-model finite differences in double, alone and with BigramHash and looping.
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kOff{.vocab = 64, .dim = 32, .depth = {.layers = 2}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
constexpr GptSpec with_smear(GptSpec s, int channels) {
  s.embedding.smear = true;
  s.embedding.smear_channels = channels;
  return s;
}
constexpr GptSpec with_loops_bigram(GptSpec s) {
  s.depth.layers = 4, s.depth.loops = 2;
  s.embedding.bigram_buckets = 16, s.embedding.bigram_dim = 8;
  return s;
}
constexpr GptSpec kSmear = with_smear(kOff, 0);
constexpr GptSpec kSmearLinear = with_smear(kOff, 12);
constexpr GptSpec kAllLerp = with_loops_bigram(kSmear);
constexpr GptSpec kAllLinear = with_loops_bigram(kSmearLinear);

// Two rows of four: BOS (1) inside a row, at a row's start, and at a row's end.
const std::vector<std::int32_t> kIds = {3, 1, 5, 1, 1, 2, 1, 4};
constexpr int kBatch = 2, kSeq = 4;

double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

template <class C>
const double* param_of(const LoneInput& in, const char* name) {
  using LA = LoneArch<typename C::Arch, typename C::Run>;
  constexpr auto table = arch_layout<LA>().table;
  const ParamInfo* p = find_param(table, name);
  REQUIRE(p != nullptr);
  return in.params.data() + p->offset;
}

// The component's backward against central differences in double, with the given ids.
template <class C>
void gradcheck_with_ids(const std::vector<std::int32_t>& ids) {
  using LA = LoneArch<typename C::Arch, typename C::Run>;
  constexpr auto table = arch_layout<LA>().table;
  LoneInput in = case_input<C>(kBatch, kSeq, 13);
  in.ids = ids;
  const LoneResult r = run_case<C>(in);
  auto loss = [&] { return run_case<C>(in, false).loss; };
  for (const auto& p : table) {
    const double err = fd_max_error(loss, in.params.data() + p.offset, r.grads.data() + p.offset, p.numel(), {}, 1e-5, 1e-3);
    INFO("tensor " << p.name.c_str() << " max relative error " << err);
    CHECK(err < 1e-6);
  }
  auto& x = in.in[std::size_t(Reg::x)];
  const double err = fd_max_error(loss, x.data(), r.din[std::size_t(Reg::x)].data(), x.size(), {}, 1e-5, 1e-3);
  INFO("register x max relative error " << err);
  CHECK(err < 1e-6);
}

// out[t] of a lone run and the same run with x[t - 1] moved: whether the previous position reaches t.
template <class C>
bool previous_reaches(std::size_t t) {
  constexpr int D = C::Arch::dim;
  LoneInput in = case_input<C>(kBatch, kSeq, 3);
  in.ids = kIds;
  const auto a = run_case<C>(in, false).out[std::size_t(Reg::x)];
  for (int j = 0; j < D; ++j) in.in[std::size_t(Reg::x)][(t - 1) * D + j] += 1.0;
  const auto b = run_case<C>(in, false).out[std::size_t(Reg::x)];
  bool moved = false;
  for (int j = 0; j < D; ++j) moved = moved || a[t * D + j] != b[t * D + j];
  return moved;
}

template <class S>
void whole_model_gradcheck(std::uint32_t seed) {
  S model(2, 8);
  randomize(model, seed);
  auto tokens = random_tokens(17, 64, seed);
  tokens[0] = tokens[3] = tokens[8] = tokens[11] = 1;  // BOS at a row's start, inside rows, at a row's end
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
}
}  // namespace

TEST_CASE("SmearGate: x_t := (1 - g) x_t + g x_{t-1} within rows, g = 0 at BOS", "[forward][smear_gate]") {
  using C = Case<"smear", EmbedArch, Program<SmearGate>>;
  constexpr int D = EmbedArch::dim;
  LoneInput in = case_input<C>(kBatch, kSeq, 5);
  in.ids = kIds;
  const LoneResult r = run_case<C>(in);
  const double* gate = param_of<C>(in, "smear.gate");
  const auto& x = in.in[std::size_t(Reg::x)];
  const auto& out = r.out[std::size_t(Reg::x)];
  for (std::size_t n = 0; n < 8; ++n)
    for (int j = 0; j < D; ++j) {
      const double g = kIds[n] == 1 ? 0.0 : sigmoid(gate[j]);
      const double prev = n % kSeq == 0 ? 0.0 : x[(n - 1) * D + j];
      CHECK(out[n * D + j] == Approx((1 - g) * x[n * D + j] + g * prev).epsilon(1e-14));
    }
  // At a BOS the stream is untouched; at a row's start without BOS, x_{-1} = 0 scales it by 1 - g.
  for (int j = 0; j < D; ++j) {
    CHECK(out[1 * D + j] == x[1 * D + j]);
    CHECK(out[4 * D + j] == x[4 * D + j]);
    CHECK(out[0 * D + j] == Approx((1 - sigmoid(gate[j])) * x[j]).epsilon(1e-14));
  }
}

TEST_CASE("SmearGateLinear: e_t := e_t + lambda sigmoid(w . e_t[:c]) e_{t-1}, t >= 1, not at BOS",
          "[forward][smear_gate]") {
  using C = Case<"smear_linear", EmbedArch, Program<SmearGateLinear>>;
  constexpr int D = EmbedArch::dim, K = 12;
  LoneInput in = case_input<C>(kBatch, kSeq, 5);
  in.ids = kIds;
  const LoneResult r = run_case<C>(in);
  const double* w = param_of<C>(in, "smear_gate.weight");
  const double lambda = *param_of<C>(in, "smear_lambda");
  REQUIRE(lambda != 0.0);
  const auto& x = in.in[std::size_t(Reg::x)];
  const auto& out = r.out[std::size_t(Reg::x)];
  for (std::size_t n = 0; n < 8; ++n) {
    double z = 0;
    for (int j = 0; j < K; ++j) z += w[j] * x[n * D + j];
    const double g = n % kSeq == 0 || kIds[n] == 1 ? 0.0 : lambda * sigmoid(z);
    for (int j = 0; j < D; ++j) {
      const double prev = n % kSeq == 0 ? 0.0 : x[(n - 1) * D + j];
      CHECK(out[n * D + j] == Approx(x[n * D + j] + g * prev).epsilon(1e-14));
    }
  }
  for (int j = 0; j < D; ++j) CHECK(out[j] == x[j]);  // t = 0 untouched (no (1 - g) here)
}

TEST_CASE("with the BOS fix off the previous document leaks into a BOS; on, it does not", "[forward][smear_gate]") {
  STATIC_REQUIRE(kEmbedCase.embedding.smear_bos_fix && !kEmbedCasePlain.embedding.smear_bos_fix);
  // Position 3 is a BOS inside row 0; position 2 an ordinary token.
  CHECK(!previous_reaches<Case<"s", EmbedArch, Program<SmearGate>>>(3));
  CHECK(previous_reaches<Case<"s", EmbedPlainArch, Program<SmearGate>>>(3));
  CHECK(previous_reaches<Case<"s", EmbedArch, Program<SmearGate>>>(2));
  CHECK(!previous_reaches<Case<"s", EmbedArch, Program<SmearGateLinear>>>(3));
  CHECK(previous_reaches<Case<"s", EmbedPlainArch, Program<SmearGateLinear>>>(3));
  CHECK(previous_reaches<Case<"s", EmbedArch, Program<SmearGateLinear>>>(2));
  // Nothing crosses from one row into the next (position 4 starts row 1).
  CHECK(!previous_reaches<Case<"s", EmbedPlainArch, Program<SmearGate>>>(4));
  CHECK(!previous_reaches<Case<"s", EmbedPlainArch, Program<SmearGateLinear>>>(4));
}

TEST_CASE("SmearGate's backward matches finite differences with BOS tokens in the rows", "[gradcheck][smear_gate]") {
  SECTION("lerp, BOS fix") { gradcheck_with_ids<Case<"s", EmbedArch, Program<SmearGate>>>(kIds); }
  SECTION("lerp, no fix") { gradcheck_with_ids<Case<"s", EmbedPlainArch, Program<SmearGate>>>(kIds); }
  SECTION("linear, BOS fix") { gradcheck_with_ids<Case<"s", EmbedArch, Program<SmearGateLinear>>>(kIds); }
  SECTION("linear, no fix") { gradcheck_with_ids<Case<"s", EmbedPlainArch, Program<SmearGateLinear>>>(kIds); }
}

TEST_CASE("SmearGate is off by default; the lerp form follows the norm, the linear form precedes it",
          "[forward][smear_gate]") {
  STATIC_REQUIRE(!program_contains<SmearGate, GptArch<GptSpec{}>::Embed>::value);
  STATIC_REQUIRE(!program_contains<SmearGateLinear, GptArch<GptSpec{}>::Embed>::value);
  using E = GptArch<kSmear>::Embed;  // TokenEmbedding, StreamNorm, SmearGate, Anchor
  STATIC_REQUIRE(E::size == 4);
  STATIC_REQUIRE(std::is_same_v<At<E, 1>, StreamNorm> && std::is_same_v<At<E, 2>, SmearGate>);
  STATIC_REQUIRE(!program_contains<SmearGateLinear, E>::value);
  using L = GptArch<kSmearLinear>::Embed;  // TokenEmbedding, SmearGateLinear, StreamNorm, Anchor
  STATIC_REQUIRE(std::is_same_v<At<L, 1>, SmearGateLinear> && std::is_same_v<At<L, 2>, StreamNorm>);
  STATIC_REQUIRE(!program_contains<SmearGate, L>::value);
  using AL = GptArch<kAllLinear>::Embed;  // TokenEmbedding, BigramHash, SmearGateLinear, StreamNorm, Anchor
  STATIC_REQUIRE(AL::size == 5);
  STATIC_REQUIRE(std::is_same_v<At<AL, 1>, BigramHash> && std::is_same_v<At<AL, 2>, SmearGateLinear>);
  using AE = GptArch<kAllLerp>::Embed;  // TokenEmbedding, BigramHash, StreamNorm, SmearGate, Anchor
  STATIC_REQUIRE(std::is_same_v<At<AE, 1>, BigramHash> && std::is_same_v<At<AE, 3>, SmearGate>);
  STATIC_REQUIRE(std::is_same_v<At<AE, 4>, Anchor>);

  static constexpr auto off = gpt_param_table<kOff>();
  static constexpr auto lerp = gpt_param_table<kSmear>();
  static constexpr auto lin = gpt_param_table<kSmearLinear>();
  STATIC_REQUIRE(table_size(lerp) == table_size(off) + 32);
  STATIC_REQUIRE(table_size(lin) == table_size(off) + 12 + 1);
  constexpr const ParamInfo* gate = find_param(lerp, "smear.gate");
  STATIC_REQUIRE((gate != nullptr && gate->rows == 32 && gate->init.kind == InitKind::zeros));
  STATIC_REQUIRE((gate->group == OptimGroup::adam_scalar && gate->export_policy == ExportPolicy::float32_control));
  constexpr const ParamInfo* w = find_param(lin, "smear_gate.weight");
  constexpr const ParamInfo* lambda = find_param(lin, "smear_lambda");
  STATIC_REQUIRE((w != nullptr && w->rows == 1 && w->cols == 12 && w->init.kind == InitKind::zeros));
  STATIC_REQUIRE((lambda != nullptr && lambda->numel() == 1 && lambda->init.kind == InitKind::zeros));
  STATIC_REQUIRE((w->group == OptimGroup::adam_scalar && lambda->group == OptimGroup::adam_scalar));
  STATIC_REQUIRE((w->export_policy == ExportPolicy::float32_control &&
                  lambda->export_policy == ExportPolicy::float32_control));
}

TEST_CASE("the linear SmearGate is transparent at init; the lerp form is not", "[forward][smear_gate]") {
  // Tensors draw by name, so the models share every other tensor's initial values.
  const auto t = random_tokens(17, 64, 9);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  Gpt<kOff, double> off(2, 8);
  Gpt<kSmearLinear, double> lin(2, 8);
  Gpt<kSmear, double> lerp(2, 8);
  off.init(7), lin.init(7), lerp.init(7);
  const double base = off.forward(x, y);
  CHECK(lin.forward(x, y) == base);
  CHECK(lerp.forward(x, y) != base);
}

TEST_CASE("whole-model gradients with SmearGate match finite differences", "[gradcheck][smear_gate]") {
  SECTION("lerp form") { whole_model_gradcheck<Gpt<kSmear, double>>(4); }
  SECTION("linear form") { whole_model_gradcheck<Gpt<kSmearLinear, double>>(5); }
  SECTION("lerp form, BigramHash, two loops") { whole_model_gradcheck<Gpt<kAllLerp, double>>(6); }
  SECTION("linear form, BigramHash, two loops") { whole_model_gradcheck<Gpt<kAllLinear, double>>(7); }
}
