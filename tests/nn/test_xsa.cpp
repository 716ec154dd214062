// XSA (nn/xsa.hpp, GptSpec.attention.xsa): the projection off the token's own value direction
// against a direct computation, the identity at blocks outside the set, its place in the block and
// the accumulation it implies (Xsa writes d v, attention adds to it), and whole-model finite
// differences in double, alone, with looping (a block the schedule visits twice) and with the
// SparseAttnGate (its own component checks are in test_components.cpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kXsaBase{.vocab = 64, .dim = 32, .depth = {.layers = 3}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
constexpr GptSpec with_xsa(GptSpec s, BlockSet b, int loops = 1) {
  s.attention.xsa = b;
  s.depth.loops = loops;
  if (loops > 1) s.depth.layers = 4;
  return s;
}
// Blocks 0 and 2 of three, no looping.
constexpr GptSpec kXsaSome = with_xsa(kXsaBase, blocks_of(0, 2));
// Two physical blocks looped twice (virtual layers run 0, 1, 0, 1): XSA on block 1, run twice.
constexpr GptSpec kXsaLooped = with_xsa(kXsaBase, last_blocks(1), 2);
// Everything: XSA on every block, the gate on 12 channels, looped.
constexpr GptSpec kXsaAllGate = [] {
  GptSpec s = with_xsa(kXsaBase, all_blocks(), 2);
  s.attention.gate_channels = 12;
  return s;
}();
// Per-virtual-layer scalars, the LN scale, XSA on block 0 only, gate on all dim channels.
constexpr GptSpec kXsaMatrices = [] {
  GptSpec s = with_xsa(kXsaBase, blocks_of(0), 2);
  s.depth.sharing = Sharing::matrices;
  s.norm.ln_scale = LnScaleIndex::layer;
  s.attention.gate_channels = 32;
  s.attention.gate_scale = 0.8;
  return s;
}();

template <class M>
void model_gradcheck(std::uint32_t seed) {
  M model(2, 8);
  randomize(model, seed);
  const auto tokens = random_tokens(17, 64, seed);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
}

constexpr Regs kSink = regs<Reg::x>, kAnchors = regs<Reg::x0>;
}  // namespace

TEST_CASE("XSA is off in the baseline and follows the attention when on", "[forward][xsa]") {
  STATIC_REQUIRE(!program_contains<Xsa, GptArch<GptSpec{}>::Block>::value);
  STATIC_REQUIRE(!program_contains<Xsa, GptArch<kXsaBase>::Block>::value);
  using B = GptArch<kXsaLooped>::Block;
  STATIC_REQUIRE(std::is_same_v<At<B, 4>, CausalAttention<>>);  // ResidMix, PreNorm, QkvProduct, QkNormRope, ...
  STATIC_REQUIRE(std::is_same_v<At<B, 5>, Xsa>);
  STATIC_REQUIRE(std::is_same_v<At<B, 6>, Product<GptAttnOut>>);
  using G = GptArch<kXsaAllGate>::Block;
  STATIC_REQUIRE(std::is_same_v<At<G, 5>, Xsa>);
  STATIC_REQUIRE(std::is_same_v<At<G, 6>, SparseAttnGate>);
  STATIC_REQUIRE(std::is_same_v<At<G, 7>, Product<GptAttnOut>>);
  // Xsa is the last reader of v: it writes d v and the attention adds its own; without XSA the
  // attention overwrites d v as before.
  STATIC_REQUIRE(has(run_accumulates<B, 4, 1, kSink, kAnchors>(), Reg::v));
  STATIC_REQUIRE(!has(run_accumulates<B, 5, 1, kSink, kAnchors>(), Reg::v));
  using Base = GptArch<kXsaBase>::Block;
  STATIC_REQUIRE(!has(run_accumulates<Base, 4, 1, kSink, kAnchors>(), Reg::v));
  // No tensors.
  STATIC_REQUIRE(table_size(gpt_param_table<kXsaLooped>()) == table_size(gpt_param_table<with_xsa(kXsaBase, {}, 2)>()));
  // The set resolves against the physical blocks.
  STATIC_REQUIRE(!Xsa::on<GptArch<kXsaLooped>>(0));
  STATIC_REQUIRE(Xsa::on<GptArch<kXsaLooped>>(1));
  STATIC_REQUIRE(Xsa::on<GptArch<kXsaSome>>(0) && !Xsa::on<GptArch<kXsaSome>>(1) && Xsa::on<GptArch<kXsaSome>>(2));
}

TEST_CASE("XSA removes each head's component along its KV head's value direction", "[forward][xsa]") {
  using C = Case<"xsa", XsaGateArch, Program<Xsa>, 128>;
  constexpr int H = XsaGateArch::heads, G = XsaGateArch::kv_heads, D = XsaGateArch::head_dim;
  const LoneInput in = case_input<C>(1, 5, 3);
  const LoneResult r = run_case<C>(in);
  const auto& y = in.in[std::size_t(Reg::h)];
  const auto& v = in.in[std::size_t(Reg::v)];
  const auto& z = r.out[std::size_t(Reg::h)];
  for (int t = 0; t < 5; ++t)
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / G);
      const double* vg = v.data() + (t * G + g) * D;
      const double* yh = y.data() + (t * H + h) * D;
      const double* zh = z.data() + (t * H + h) * D;
      double vv = 0, yv = 0;
      for (int e = 0; e < D; ++e) vv += vg[e] * vg[e], yv += yh[e] * vg[e];
      double zv = 0;
      for (int e = 0; e < D; ++e) {
        REQUIRE(zh[e] == Approx(yh[e] - yv / vv * vg[e]).margin(1e-13));  // y - (y . v) v / |v|^2
        zv += zh[e] * vg[e];
      }
      REQUIRE(std::abs(zv) < 1e-12);  // nothing left along v
    }
}

TEST_CASE("XSA at a block outside its set is an exact identity", "[forward][xsa]") {
  using C = Case<"xsa (off block)", XsaGateArch, Program<Xsa>, 128, 2>;
  STATIC_REQUIRE(!Xsa::on<XsaGateArch>(2));
  const LoneInput in = case_input<C>(2, 4, 5);
  const LoneResult r = run_case<C>(in);
  CHECK(r.out[std::size_t(Reg::h)] == in.in[std::size_t(Reg::h)]);
  CHECK(r.din[std::size_t(Reg::h)] == in.weight[std::size_t(Reg::h)]);
  for (double d : r.din[std::size_t(Reg::v)]) REQUIRE(d == 0.0);
}

TEST_CASE("attention adds its d v to XSA's, and overwrites it without XSA", "[forward][xsa]") {
  // At a block outside the set the run attention + Xsa gives exactly the attention's gradients.
  using On = Case<"causal_attention+xsa (off block)", XsaGateArch, Program<CausalAttention<>, Xsa>, 0, 2>;
  using Plain = Case<"causal_attention", XsaGateArch, Program<CausalAttention<>>, 0, 2>;
  const LoneInput in = case_input<On>(2, 8, 7);
  const LoneResult a = run_case<On>(in), b = run_case<Plain>(in);
  for (Reg reg : {Reg::q, Reg::k, Reg::v}) CHECK(a.din[std::size_t(reg)] == b.din[std::size_t(reg)]);
  CHECK(a.out[std::size_t(Reg::h)] == b.out[std::size_t(Reg::h)]);
  CHECK(a.grads == b.grads);
}

TEST_CASE("whole-model gradients with XSA match finite differences", "[gradcheck][xsa]") {
  SECTION("on blocks 0 and 2 of three") { model_gradcheck<Gpt<kXsaSome, double>>(4); }
  SECTION("on the last block, looped: its two uses") { model_gradcheck<Gpt<kXsaLooped, double>>(5); }
  SECTION("on every block with the sparse attention gate, looped") { model_gradcheck<Gpt<kXsaAllGate, double>>(6); }
  SECTION("per-virtual-layer scalars, LN scale, gate on every channel") {
    model_gradcheck<Gpt<kXsaMatrices, double>>(7);
  }
}

TEST_CASE("XSA changes the loss of a model that uses it", "[forward][xsa]") {
  const auto t = random_tokens(17, 64, 9);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  auto loss = [&](auto tag) {
    typename decltype(tag)::type m(2, 8);
    randomize(m, 9);
    return m.forward(x, y);
  };
  const double off = loss(std::type_identity<Gpt<with_xsa(kXsaBase, {}, 2), double>>{});
  const double on = loss(std::type_identity<Gpt<kXsaLooped, double>>{});
  CHECK(on != off);
}
