// SparseAttnGate (nn/sparse_attn_gate.hpp, GptSpec.attention.gate_channels / gate_scale): the gate
// against a direct computation, its tensor (name, shape, init, group, export, scope), its place in
// the block and the accumulation it implies (it writes d n, the QKV product adds), and whole-model
// finite differences in double (with XSA and looping in test_xsa.cpp; its component checks in
// test_components.cpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "../model/gpt_test_specs.hpp"
#include "../model/model_gradcheck.hpp"
#include "component_cases.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr GptSpec kGate{.vocab = 64,
                        .dim = 32,
                        .depth = {.layers = 3},
                        .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .gate_channels = 12}};
constexpr GptSpec with_gate(GptSpec s, int c, double scale = 0.5) {
  s.attention.gate_channels = c;
  s.attention.gate_scale = scale;
  return s;
}
constexpr GptSpec kNoGate = with_gate(kGate, 0);
// Looped, per-virtual-layer gates, LN scale, a different scale.
constexpr GptSpec kGateLayers = [] {
  GptSpec s = with_gate(kGate, 7, 1.3);
  s.depth.layers = 4;
  s.depth.loops = 2;
  s.depth.sharing = Sharing::matrices;
  s.norm.ln_scale = LnScaleIndex::block;
  return s;
}();
constexpr Regs kSink = regs<Reg::x>, kAnchors = regs<Reg::x0>;

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
}  // namespace

TEST_CASE("the sparse attention gate is off in the baseline and precedes the output projection", "[forward][sparse_attn_gate]") {
  STATIC_REQUIRE(!program_contains<SparseAttnGate, GptArch<GptSpec{}>::Block>::value);
  STATIC_REQUIRE(!program_contains<SparseAttnGate, GptArch<kNoGate>::Block>::value);
  using B = GptArch<kGate>::Block;
  STATIC_REQUIRE(std::is_same_v<At<B, 4>, CausalAttention<>>);
  STATIC_REQUIRE(std::is_same_v<At<B, 5>, SparseAttnGate>);
  STATIC_REQUIRE(std::is_same_v<At<B, 6>, Product<GptAttnOut>>);
  // It reads n after the QKV product did: it writes d n, the product adds.
  STATIC_REQUIRE(std::is_same_v<At<B, 2>, QkvProduct>);
  STATIC_REQUIRE(has(run_accumulates<B, 2, 1, kSink, kAnchors>(), Reg::n));
  STATIC_REQUIRE(has(run_accumulates<B, 2, 2, kSink, kAnchors>(), Reg::n));  // the fused QKV + QK-norm run
  STATIC_REQUIRE(!has(run_accumulates<B, 5, 1, kSink, kAnchors>(), Reg::n));
  using Base = GptArch<kNoGate>::Block;
  STATIC_REQUIRE(!has(run_accumulates<Base, 2, 1, kSink, kAnchors>(), Reg::n));
}

TEST_CASE("the sparse attention gate's tensor: attn.attn_gate_w [heads, channels] per block, zero", "[forward][sparse_attn_gate]") {
  constexpr auto table = gpt_param_table<kGate>();
  STATIC_REQUIRE(table_size(table) == table_size(gpt_param_table<kNoGate>()) + 3 * 4 * 12);
  for (int b = 0; b < 3; ++b) {
    const ParamInfo* p = find_param(table, "blocks." + std::to_string(b) + ".attn.attn_gate_w");
    REQUIRE(p != nullptr);
    CHECK(p->rows == 4);
    CHECK(p->cols == 12);
    CHECK(p->rank == 2);
    CHECK(p->init.kind == InitKind::zeros);
    CHECK(p->group == OptimGroup::adam_scalar);
    CHECK(p->export_policy == ExportPolicy::float16);
    CHECK(p->scope == Scope::block);
    CHECK(p->block == b);
  }
  // Under Sharing::matrices one per virtual layer.
  constexpr auto layers = gpt_param_table<kGateLayers>();
  STATIC_REQUIRE(table_size(layers) == table_size(gpt_param_table<with_gate(kGateLayers, 0)>()) + 4 * 4 * 7);
  const ParamInfo* p = find_param(layers, "layers.3.attn.attn_gate_w");
  INFO("the per-layer gate's name");
  if (p == nullptr)
    for (const auto& q : layers) UNSCOPED_INFO(q.name.c_str());
  REQUIRE(p != nullptr);
  CHECK(p->scope == Scope::layer);
}

TEST_CASE("the gate scales each head by sigmoid(scale * W_h . n[:c])", "[forward][sparse_attn_gate]") {
  using C = Case<"sparse_attn_gate", XsaGateArch, Program<SparseAttnGate>, 128>;
  using LA = LoneArch<XsaGateArch, Program<SparseAttnGate>>;
  constexpr auto table = arch_layout<LA>().table;
  constexpr int H = XsaGateArch::heads, D = XsaGateArch::head_dim, K = 12, Dim = XsaGateArch::dim;
  STATIC_REQUIRE(SparseAttnGate::channels<XsaGateArch> == K);
  const ParamInfo* w = find_param(table, "blocks.1.attn.attn_gate_w");
  REQUIRE(w != nullptr);
  LoneInput in = case_input<C>(1, 3, 4);
  const auto& n = in.in[std::size_t(Reg::n)];
  const auto& y = in.in[std::size_t(Reg::h)];
  SECTION("random weights") {
    const LoneResult r = run_case<C>(in);
    const double* W = in.params.data() + w->offset;
    for (int t = 0; t < 3; ++t)
      for (int h = 0; h < H; ++h) {
        double a = 0;
        for (int j = 0; j < K; ++j) a += W[h * K + j] * n[std::size_t(t * Dim + j)];
        const double g = 1 / (1 + std::exp(-0.5 * a));
        for (int e = 0; e < D; ++e) {
          const std::size_t at = std::size_t(t * Dim + h * D + e);
          REQUIRE(r.out[std::size_t(Reg::h)][at] == Approx(g * y[at]).epsilon(1e-14));
        }
      }
    // d n is zero beyond the gate's channels (its only reader here).
    for (int t = 0; t < 3; ++t)
      for (int j = K; j < Dim; ++j) REQUIRE(r.din[std::size_t(Reg::n)][std::size_t(t * Dim + j)] == 0.0);
  }
  SECTION("at its zero init every head is halved") {
    for (std::size_t i = 0; i < w->numel(); ++i) in.params[w->offset + i] = 0;
    const LoneResult r = run_case<C>(in);
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(r.out[std::size_t(Reg::h)][i] == 0.5 * y[i]);
  }
}

TEST_CASE("whole-model gradients with the sparse attention gate match finite differences", "[gradcheck][sparse_attn_gate]") {
  SECTION("per block, 12 channels") { model_gradcheck<Gpt<kGate, double>>(3); }
  SECTION("per virtual layer, looped, LN scale") { model_gradcheck<Gpt<kGateLayers, double>>(8); }
}
