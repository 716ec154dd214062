// Gated U-Net skips (nn/unet_skip.hpp, GptSpec.depth.skip_gates) and the per-loop U-Net
// (GptSpec.depth.skips_per_loop): the gates' tensor, a forward against a hand-built expectation in
// which each loop's decoder reads its own loop's encoder outputs, and whole-model finite differences
// in double for the gates alone, the per-loop skips with and without gates, and every technique of
// this file's family on at once (value embedding, gates, AsymLogit, two loops, per-loop skips).
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kGates{.vocab = 64,
                         .dim = 32,
                         .depth = {.layers = 5, .skip_gates = true},
                         .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
constexpr GptSpec kUngated{.vocab = 64, .dim = 32, .depth = {.layers = 5}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
// Four blocks looped twice, a U-Net of two skips inside each loop of four virtual layers.
constexpr GptSpec kPerLoop{.vocab = 64,
                           .dim = 32,
                           .depth = {.layers = 8, .loops = 2, .skips_per_loop = true},
                           .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
constexpr GptSpec with_gates(GptSpec s) {
  s.depth.skip_gates = true;
  return s;
}
constexpr GptSpec kPerLoopGated = with_gates(kPerLoop);
// Everything on: value embedding, gated per-loop skips, AsymLogit, two loops.
constexpr GptSpec kAllOn{.vocab = 64,
                         .dim = 32,
                         .depth = {.layers = 8, .loops = 2, .skips_per_loop = true, .skip_gates = true},
                         .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .ve_dim = 8,
                                       .ve_blocks = blocks_of(1, 3)},
                         .head = {.softcap = 5.0, .asym_softcap = true}};

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

// With every block an identity (zero output projections, resid_mix [1; 0]: the reference init) the
// stream is the normed embedding e scaled per channel by the skips alone. A skip is x := G x + W s
// (gated: G = g, W = (1 - g) w; plain: G = 1, W = w). In each loop of four layers, layers 0 and 1 are
// the encoder; layer 2 adds skip 0 from layer 1, layer 3 skip 1 from layer 0. Loop one ends at
// a e with a = G1 (G0 + W0) + W1; loop two, reading its own encoder outputs (a e), at a^2 e. (Had
// loop two's decoder read loop one's encoder outputs, e, it would end at (G1 (G0 + W0) a + W1) e.)
template <GptSpec S>
void check_per_loop_forward() {
  using M = Gpt<S, double>;
  constexpr int D = S.dim, V = S.vocab;
  M model(1, 6);
  model.init(7);
  double* emb = model.param("tok_emb.weight");
  for (int i = 0; i < V * D; ++i) emb[i] = normal01(3, 1, std::size_t(i));
  double* w = model.param("skip_weights");
  for (int i = 0; i < 2 * D; ++i) w[i] = 1.0 + 0.5 * normal01(3, 2, std::size_t(i));
  double* gamma = S.depth.skip_gates ? model.param("skip_gates") : nullptr;
  if (gamma)
    for (int i = 0; i < 2 * D; ++i) gamma[i] = normal01(3, 3, std::size_t(i));
  const std::vector<std::int32_t> x{3, 1, 4, 1, 5, 9}, y{1, 4, 1, 5, 9, 2};
  model.forward(x, y);
  const auto logits = model.logits();
  auto G = [&](int i, int c) { return gamma ? 1 / (1 + std::exp(-gamma[i * D + c])) : 1.0; };
  auto W = [&](int i, int c) { return gamma ? (1 - G(i, c)) * w[i * D + c] : w[i * D + c]; };
  auto rms = [](std::vector<double> v) {
    double ss = 0;
    for (double e : v) ss += e * e;
    const double r = 1 / std::sqrt(ss / double(v.size()) + S.norm.eps);
    for (double& e : v) e *= r;
    return v;
  };
  for (std::size_t n = 0; n < x.size(); ++n) {
    const std::vector<double> e = rms(std::vector<double>(emb + std::size_t(x[n]) * D, emb + std::size_t(x[n] + 1) * D));
    std::vector<double> s(D);
    for (int c = 0; c < D; ++c) {
      const double a = G(1, c) * (G(0, c) + W(0, c)) + W(1, c);
      s[c] = a * a * e[c];
    }
    const std::vector<double> h = rms(s);
    for (int v = 0; v < V; ++v) {
      double z = 0;
      for (int c = 0; c < D; ++c) z += h[c] * emb[std::size_t(v) * D + c];
      REQUIRE(logits[n * V + v] == Approx(S.head.softcap * std::tanh(z / S.head.softcap)).epsilon(1e-12));
    }
  }
}
}  // namespace

TEST_CASE("skip gates are off by default and follow the skip weights when on", "[forward][skip_gates]") {
  STATIC_REQUIRE(!UNetSkip::gated<GptArch<GptSpec{}>>());
  STATIC_REQUIRE(UNetSkip::gated<GptArch<kGates>>());
  STATIC_REQUIRE(rows_of<UNetSkip, GptArch<kUngated>>().count == 1);
  STATIC_REQUIRE(rows_of<UNetSkip, GptArch<kGates>>().count == 2);
  STATIC_REQUIRE(table_size(gpt_param_table<kGates>()) == table_size(gpt_param_table<kUngated>()) + 2 * 32);
  using M = Gpt<kGates, double>;
  const auto& w = M::row("skip_weights");
  const auto& g = M::row("skip_gates");
  CHECK(g.offset == w.offset + w.numel());  // right after the skip weights
  CHECK((g.rows == 2 && g.cols == 32 && g.init.kind == InitKind::zeros && g.group == OptimGroup::adam_scalar));
  CHECK((g.scope == Scope::global && g.export_policy == ExportPolicy::float32_control));
}

TEST_CASE("per-loop U-Net: each loop's decoder reads its own loop's encoder outputs", "[forward][skip_gates]") {
  // The plan: in loop two, layer 6 reads layer 5 and layer 7 reads layer 4.
  constexpr DepthPlan p = GptArch<kPerLoop>::depth;
  STATIC_REQUIRE(p.max_skips() == 2);
  STATIC_REQUIRE((p.skip_into(0, 2) == 0 && p.skip_source(0, 2) == 1 && p.skip_into(0, 3) == 1 && p.skip_source(0, 3) == 0));
  STATIC_REQUIRE((p.skip_into(0, 6) == 0 && p.skip_source(0, 6) == 5 && p.skip_into(0, 7) == 1 && p.skip_source(0, 7) == 4));
  STATIC_REQUIRE((p.skip_from(0, 4) == 1 && p.skip_from(0, 5) == 0 && p.skip_from(0, 6) == -1));
  SECTION("plain skips") { check_per_loop_forward<kPerLoop>(); }
  SECTION("gated skips") { check_per_loop_forward<kPerLoopGated>(); }
}

TEST_CASE("gated skips with the gates at zero init halve both terms", "[forward][skip_gates]") {
  // g = 0.5: x := 0.5 x + 0.5 w s, so with identity blocks and w = 1 a one-skip model's stream is
  // e, e, (e + e) / 2 = e: the same logits as with the skips off.
  constexpr GptSpec gated{.vocab = 64, .dim = 32, .depth = {.layers = 2, .skip_gates = true},
                          .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
  constexpr GptSpec off{.vocab = 64, .dim = 32, .depth = {.layers = 2, .unet_skips = false},
                        .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
  Gpt<gated, double> a(1, 4);
  Gpt<off, double> b(1, 4);
  a.init(5), b.init(5);
  const std::vector<std::int32_t> x{1, 2, 3, 4}, y{2, 3, 4, 5};
  CHECK(a.forward(x, y) == Approx(b.forward(x, y)).epsilon(1e-14));
}

TEST_CASE("whole-model gradients with skip gates and per-loop skips match finite differences",
          "[gradcheck][skip_gates]") {
  SECTION("gates, one U-Net") { gradcheck_model<Gpt<kGates, double>>(4); }
  SECTION("per-loop skips, two loops") { gradcheck_model<Gpt<kPerLoop, double>>(5); }
  SECTION("per-loop gated skips, two loops") { gradcheck_model<Gpt<kPerLoopGated, double>>(6); }
  SECTION("value embedding, gated per-loop skips and AsymLogit, two loops") { gradcheck_model<Gpt<kAllOn, double>>(7); }
}
