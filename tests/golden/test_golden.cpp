// The CPU reference against golden outputs of the PyTorch port (tests/golden/make_golden.py): the
// same weights and tokens must give the same loss and the same gradient for every tensor.
#include <catch2/catch.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "golden_file.hpp"
#include "pgolf/model/gpt.hpp"

using namespace pgolf;

namespace {

using pgolf::test::Golden;
using pgolf::test::load_golden;

std::string fmt_double(double v) {
  // Shortest round-trip form, as Python's repr writes it.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find('.') == std::string::npos && s.find('e') == std::string::npos) s += ".0";
  return s;
}

template <GptSpec S>
std::string spec_line() {
  std::ostringstream os;
  os << "vocab=" << S.vocab << " dim=" << S.dim << " layers=" << S.depth.layers << " loops=" << S.depth.loops
     << " heads=" << S.attention.heads << " kv_heads=" << S.attention.kv_heads
     << " rope_dims=" << S.attention.rope_dims << " rope_base=" << fmt_double(S.attention.rope_base)
     << " qk_gain_init=" << fmt_double(S.attention.qk_gain_init) << " mult=" << S.mlp.mult
     << " activation=" << (S.mlp.activation == Activation::relu2 ? "relu2" : "leaky_relu2")
     << " tied=" << (S.embedding.tied ? 1 : 0) << " init_std=" << fmt_double(S.embedding.init_std)
     << " softcap=" << fmt_double(S.head.softcap) << " eps=" << fmt_double(S.norm.eps)
     << " unet=" << (S.depth.unet_skips ? 1 : 0);
  return os.str();
}

template <GptSpec S>
void check_golden(const std::string& name) {
  const Golden g = load_golden(name);
  REQUIRE(g.spec == spec_line<S>());
  using M = Gpt<S, double>;
  REQUIRE(g.params.size() == M::param_table.size());
  M model(g.batch, g.seq);
  std::size_t at = 0;
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    REQUIRE(g.params[i].first == M::param_table[i].name.view());
    REQUIRE(g.params[i].second == M::param_table[i].numel());
    std::copy(g.weights.begin() + at, g.weights.begin() + at + g.params[i].second, model.param(i));
    at += g.params[i].second;
  }
  model.zero_grad();
  const double loss = model.forward(g.x, g.y);
  CHECK(loss == Approx(g.loss).epsilon(1e-12));
  model.backward();
  // Per tensor relative L2 error. Both sides run in float64; what remains is summation order.
  at = 0;
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    double num = 0, den = 0;
    for (std::size_t j = 0; j < g.params[i].second; ++j) {
      const double e = model.grads()[M::param_table[i].offset + j] - g.grads[at + j];
      num += e * e;
      den += g.grads[at + j] * g.grads[at + j];
    }
    at += g.params[i].second;
    INFO(g.params[i].first << ": relative L2 error " << std::sqrt(num / den) << ", grad norm " << std::sqrt(den));
    REQUIRE(den > 0);  // every tensor carries gradient in these cases
    CHECK(std::sqrt(num / den) < 1e-10);
  }
}

constexpr GptSpec kTinyReference{
    .vocab = 64, .dim = 32, .depth = {.layers = 3}, .attention = {.heads = 4, .kv_heads = 4, .rope_dims = 8}};
constexpr GptSpec kTinyGqaPartialRope{
    .vocab = 64,
    .dim = 32,
    .depth = {.layers = 4, .loops = 2},
    .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4, .rope_base = 500.0, .qk_gain_init = 2.0},
    .mlp = {.mult = 3, .activation = Activation::leaky_relu2},
    .embedding = {.tied = false},
    .head = {.softcap = 10.0}};

}  // namespace

TEST_CASE("matches PyTorch: tiny reference GPT", "[golden]") { check_golden<kTinyReference>("tiny_reference"); }

TEST_CASE("matches PyTorch: GQA, partial RoPE, leaky, untied, shared blocks", "[golden]") {
  check_golden<kTinyGqaPartialRope>("tiny_gqa_partial_rope");
}
