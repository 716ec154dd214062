// AsymLogit (nn/asym_softcap.hpp, GptSpec.head.asym_softcap): its place and tensors, its formula and
// cap gradients, its equality with the symmetric softcap when both caps equal it, and whole-model
// finite differences in double (its lone component checks run from component_cases.hpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kAsym{.vocab = 64,
                        .dim = 32,
                        .depth = {.layers = 3},
                        .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4},
                        .head = {.softcap = 5.0, .asym_softcap = true}};
constexpr GptSpec kSym{.vocab = 64,
                       .dim = 32,
                       .depth = {.layers = 3},
                       .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4},
                       .head = {.softcap = 5.0}};
constexpr GptSpec kAsymUntied{.vocab = 64,
                              .dim = 32,
                              .depth = {.layers = 2},
                              .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4},
                              .embedding = {.tied = false},
                              .head = {.softcap = 3.0, .asym_softcap = true}};
}  // namespace

TEST_CASE("AsymLogit replaces the softcap in the head when on", "[forward][asym_softcap]") {
  using H0 = GptArch<GptSpec{}>::Head;
  STATIC_REQUIRE(!program_contains<AsymSoftcap, H0>::value);
  STATIC_REQUIRE(std::is_same_v<At<H0, 2>, Softcap>);
  using H = GptArch<kAsym>::Head;
  STATIC_REQUIRE(std::is_same_v<At<H, 2>, AsymSoftcap>);
  STATIC_REQUIRE(!program_contains<Softcap, H>::value);
  STATIC_REQUIRE(table_size(gpt_param_table<kAsym>()) == table_size(gpt_param_table<kSym>()) + 2);
  using M = Gpt<kAsym, double>;
  for (const char* name : {"softcap_pos", "softcap_neg"}) {
    const auto& r = M::row(name);
    CHECK((r.rows == 1 && r.init.kind == InitKind::constant && r.init.value == 5.0));
    CHECK((r.group == OptimGroup::adam_scalar && r.export_policy == ExportPolicy::float32_control));
    CHECK(r.scope == Scope::global);
  }
}

TEST_CASE("AsymLogit caps each sign with its own cap, and both caps get their gradient", "[forward][asym_softcap]") {
  using C = Case<"asym", VeArch, Program<AsymSoftcap>, 256, 1, false>;
  const LoneInput in = case_input<C>(2, 3, 7);
  const LoneResult r = run_case<C>(in);
  using LA = LoneArch<VeArch, Program<AsymSoftcap>>;
  constexpr auto table = arch_layout<LA>().table;
  const std::size_t ip = find_param(table, "softcap_pos")->offset, in_ = find_param(table, "softcap_neg")->offset;
  const double sp = in.params[ip], sn = in.params[in_];
  REQUIRE(sp != sn);
  const auto& z = in.in[std::size_t(Reg::h)];
  const auto& dy = in.weight[std::size_t(Reg::h)];
  double dsp = 0, dsn = 0;
  int pos = 0, neg = 0;
  for (std::size_t e = 0; e < z.size(); ++e) {
    const double c = z[e] >= 0 ? sp : sn, u = z[e] / c, t = std::tanh(u);
    REQUIRE(r.out[std::size_t(Reg::h)][e] == Approx(c * t).epsilon(1e-14));
    REQUIRE(r.din[std::size_t(Reg::h)][e] == Approx(dy[e] * (1 - t * t)).epsilon(1e-13));
    (z[e] >= 0 ? dsp : dsn) += dy[e] * (t - u * (1 - t * t));
    (z[e] >= 0 ? pos : neg) += 1;
  }
  REQUIRE((pos > 0 && neg > 0));
  CHECK(r.grads[ip] == Approx(dsp).epsilon(1e-12));
  CHECK(r.grads[in_] == Approx(dsn).epsilon(1e-12));
}

TEST_CASE("AsymLogit with both caps at the softcap is the symmetric softcap", "[forward][asym_softcap]") {
  Gpt<kAsym, double> a(2, 8);
  Gpt<kSym, double> b(2, 8);
  randomize(b, 3);
  a.init(7);
  // The tables agree up to the two caps, which come last (the head's global rows).
  auto pa = a.params();
  auto pb = b.params();
  REQUIRE(pa.size() == pb.size() + 2);
  for (std::size_t i = 0; i < pb.size(); ++i) pa[i] = pb[i];
  REQUIRE(*a.param("softcap_pos") == 5.0);
  const auto t = random_tokens(17, 64, 3);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  CHECK(a.forward(x, y) == Approx(b.forward(x, y)).epsilon(1e-14));
  *a.param("softcap_neg") = 2.0;
  CHECK(a.forward(x, y) != Approx(b.forward(x, y)).epsilon(1e-6));
}

TEST_CASE("whole-model gradients with AsymLogit match finite differences", "[gradcheck][asym_softcap]") {
  auto gradcheck = [](auto tag, std::uint32_t seed) {
    using M = typename decltype(tag)::type;
    M model(2, 8);
    randomize(model, seed);
    const auto tokens = random_tokens(17, 64, seed);
    const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
    model.zero_grad();
    model.forward(x, y);
    model.backward();
    CHECK(*model.grad("softcap_pos") != 0.0);
    CHECK(*model.grad("softcap_neg") != 0.0);
    check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
  };
  SECTION("tied head") { gradcheck(std::type_identity<Gpt<kAsym, double>>{}, 4); }
  SECTION("untied head") { gradcheck(std::type_identity<Gpt<kAsymUntied, double>>{}, 6); }
}
