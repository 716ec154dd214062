// Behaviour of Gpt<Spec> beyond gradients: initialisation, loss at init, accumulation, sharing,
// precision agreement and input errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <string_view>

#include "gpt_test_specs.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("initialisation follows the reference and is reproducible", "[forward][gpt]") {
  using M = Gpt<kTiny, double>;
  M a(1, 4), b(1, 4);
  a.init(1337);
  b.init(1337);
  REQUIRE(std::equal(a.params().begin(), a.params().end(), b.params().begin()));
  b.init(1338);
  REQUIRE(!std::equal(a.params().begin(), a.params().end(), b.params().begin()));

  auto blk = [](int b, const char* name) { return "blocks." + std::to_string(b) + "." + name; };
  const double* emb = a.param("tok_emb.weight");
  const std::size_t ne = std::size_t(kTiny.vocab) * kTiny.dim;
  double s2 = 0;
  for (std::size_t i = 0; i < ne; ++i) s2 += emb[i] * emb[i];
  CHECK(std::sqrt(s2 / ne) == Approx(0.005).epsilon(0.1));  // 2048 draws: ~1.6% standard error
  const double bound = 1 / std::sqrt(double(kTiny.dim));
  for (int b2 = 0; b2 < kTiny.blocks(); ++b2) {
    const double* wq = a.param(blk(b2, "attn.c_q.weight"));
    double mx = 0;
    for (int i = 0; i < kTiny.dim * kTiny.dim; ++i) mx = std::max(mx, std::abs(wq[i]));
    CHECK(mx <= bound);
    CHECK(mx > 0.9 * bound);
    for (int i = 0; i < kTiny.dim * kTiny.dim; ++i) REQUIRE(a.param(blk(b2, "attn.proj.weight"))[i] == 0.0);
    for (int i = 0; i < kTiny.dim * kTiny.hidden(); ++i) REQUIRE(a.param(blk(b2, "mlp.proj.weight"))[i] == 0.0);
    for (int h = 0; h < kTiny.attention.heads; ++h) REQUIRE(a.param(blk(b2, "attn.q_gain"))[h] == 1.5);
    const double* mix = a.param(blk(b2, "resid_mix"));
    for (int c = 0; c < kTiny.dim; ++c) {
      REQUIRE(mix[c] == 1.0);
      REQUIRE(mix[kTiny.dim + c] == 0.0);
      REQUIRE(a.param(blk(b2, "attn_scale"))[c] == 1.0);
      REQUIRE(a.param(blk(b2, "mlp_scale"))[c] == 1.0);
    }
  }
  for (int i = 0; i < kTiny.skip_count() * kTiny.dim; ++i) REQUIRE(a.param("skip_weights")[i] == 1.0);
}

TEST_CASE("float and double backends draw the same weights", "[forward][gpt]") {
  Gpt<kTiny, float> f(1, 4);
  Gpt<kTiny, double> d(1, 4);
  f.init(5);
  d.init(5);
  for (std::size_t i = 0; i < f.params().size(); ++i) REQUIRE(f.params()[i] == float(d.params()[i]));
}

TEST_CASE("loss at initialisation is close to log(vocab)", "[forward][gpt]") {
  Gpt<kTiny, double> m(2, 16);
  m.init(1);
  const auto t = random_tokens(33, kTiny.vocab, 4);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  // Tied embedding with std 0.005: logits are ~1e-3, so the prediction is nearly uniform.
  CHECK(m.forward(x, y) == Approx(std::log(64.0)).margin(0.05));
  const auto rows = m.row_losses();
  REQUIRE(rows.size() == 32);
  double mean = 0;
  for (double r : rows) mean += r / 32;
  CHECK(mean == Approx(m.forward(x, y)).epsilon(1e-12));
}

TEST_CASE("forward is repeatable and backward accumulates with its scale", "[forward][gpt]") {
  Gpt<kTiny, double> m(2, 8);
  randomize(m, 5);
  const auto t = random_tokens(17, kTiny.vocab, 6);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  const double l1 = m.forward(x, y);
  m.zero_grad();
  m.backward();
  const std::vector<double> g1(m.grads().begin(), m.grads().end());
  REQUIRE(m.forward(x, y) == l1);
  m.backward(0.5);
  for (std::size_t i = 0; i < g1.size(); ++i) REQUIRE(m.grads()[i] == Approx(1.5 * g1[i]).epsilon(1e-12).margin(1e-300));
}

TEST_CASE("a looped spec equals the unrolled spec with tied copies, and sums block gradients",
          "[forward][gpt]") {
  // 4 virtual layers over 2 blocks vs 4 distinct blocks holding copies (block v gets block v % 2).
  constexpr GptSpec unrolled{.vocab = 64, .dim = 32, .depth = {.layers = 4}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 4}};
  Gpt<kTinyShared, double> shared(2, 8);
  Gpt<unrolled, double> full(2, 8);
  randomize(shared, 8);
  auto copy = [](const double* from, double* to, std::size_t n) { std::copy(from, from + n, to); };
  using Shared = Gpt<kTinyShared, double>;
  auto blk = [](int b, std::string_view name) { return "blocks." + std::to_string(b) + "." + std::string(name); };
  copy(shared.param("tok_emb.weight"), full.param("tok_emb.weight"), Shared::row("tok_emb.weight").numel());
  copy(shared.param("skip_weights"), full.param("skip_weights"), Shared::row("skip_weights").numel());
  // The tensors of block 0 in table order, by their names within a block.
  std::vector<std::string> block_tensors;
  for (const auto& p : Shared::param_table)
    if (p.block == 0) block_tensors.emplace_back(p.name.view().substr(9));
  REQUIRE(block_tensors.size() == 10);
  for (int v = 0; v < 4; ++v)
    for (const auto& name : block_tensors)
      copy(shared.param(blk(v % 2, name)), full.param(blk(v, name)), Shared::row(blk(v % 2, name)).numel());
  const auto t = random_tokens(17, 64, 9);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  shared.zero_grad();
  full.zero_grad();
  REQUIRE(shared.forward(x, y) == Approx(full.forward(x, y)).epsilon(1e-13));
  shared.backward();
  full.backward();
  for (int b = 0; b < 2; ++b)
    for (const auto& name : block_tensors) {
      const auto& info = Shared::row(blk(b, name));
      for (std::size_t i = 0; i < info.numel(); ++i) {
        const double sum = full.grad(blk(b, name))[i] + full.grad(blk(b + 2, name))[i];
        REQUIRE(shared.grad(blk(b, name))[i] == Approx(sum).epsilon(1e-10).margin(1e-14));
      }
    }
}

TEST_CASE("float forward and backward agree with double", "[forward][gpt]") {
  Gpt<kTiny, double> d(2, 16);
  Gpt<kTiny, float> f(2, 16);
  randomize(d, 10);
  for (std::size_t i = 0; i < d.params().size(); ++i) f.params()[i] = float(d.params()[i]);
  const auto t = random_tokens(33, 64, 11);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  d.zero_grad();
  f.zero_grad();
  CHECK(f.forward(x, y) == Approx(d.forward(x, y)).epsilon(1e-5));
  d.backward();
  f.backward();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < d.grads().size(); ++i) {
    const double e = double(f.grads()[i]) - d.grads()[i];
    num += e * e;
    den += d.grads()[i] * d.grads()[i];
  }
  CHECK(std::sqrt(num / den) < 1e-4);  // relative L2 error of the whole gradient in float
}

TEST_CASE("bad inputs are clear errors", "[forward][gpt]") {
  REQUIRE_THROWS_WITH((Gpt<kTiny, double>(0, 8)), Catch::Contains("batch must be positive"));
  REQUIRE_THROWS_WITH((Gpt<kTiny, double>(1, 0)), Catch::Contains("sequence length must be positive"));
  Gpt<kTiny, double> m(1, 4);
  m.init(1);
  REQUIRE_THROWS_WITH(m.backward(), Catch::Contains("before forward"));
  std::vector<std::int32_t> x = {1, 2, 3}, y = {1, 2, 3, 4};
  REQUIRE_THROWS_WITH(m.forward(x, y), Catch::Contains("expected batch*seq_len = 4"));
  x = {1, 2, 3, 64};
  REQUIRE_THROWS_WITH(m.forward(x, y), Catch::Contains("outside the vocabulary"));
  x = {1, 2, 3, 4};
  y = {1, 2, 99, 4};
  REQUIRE_THROWS_WITH(m.forward(x, y), Catch::Contains("target id 99"));
}
