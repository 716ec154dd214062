// Behaviour of Gpt<Spec> beyond gradients: initialisation, loss at init, accumulation, sharing,
// precision agreement and input errors.
#include <catch2/catch.hpp>

#include <cmath>

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

  using I = M::Index;
  const double* emb = a.param(I::tok_emb);
  const std::size_t ne = std::size_t(kTiny.vocab) * kTiny.dim;
  double s2 = 0;
  for (std::size_t i = 0; i < ne; ++i) s2 += emb[i] * emb[i];
  CHECK(std::sqrt(s2 / ne) == Approx(0.005).epsilon(0.1));  // 2048 draws: ~1.6% standard error
  const double bound = 1 / std::sqrt(double(kTiny.dim));
  for (int b2 = 0; b2 < kTiny.blocks(); ++b2) {
    const double* wq = a.param(I::block(b2, BlockParam::c_q));
    double mx = 0;
    for (int i = 0; i < kTiny.dim * kTiny.dim; ++i) mx = std::max(mx, std::abs(wq[i]));
    CHECK(mx <= bound);
    CHECK(mx > 0.9 * bound);
    for (int i = 0; i < kTiny.dim * kTiny.dim; ++i) REQUIRE(a.param(I::block(b2, BlockParam::attn_proj))[i] == 0.0);
    for (int i = 0; i < kTiny.dim * kTiny.hidden(); ++i) REQUIRE(a.param(I::block(b2, BlockParam::mlp_proj))[i] == 0.0);
    for (int h = 0; h < kTiny.attention.heads; ++h) REQUIRE(a.param(I::block(b2, BlockParam::q_gain))[h] == 1.5);
    const double* mix = a.param(I::block(b2, BlockParam::resid_mix));
    for (int c = 0; c < kTiny.dim; ++c) {
      REQUIRE(mix[c] == 1.0);
      REQUIRE(mix[kTiny.dim + c] == 0.0);
      REQUIRE(a.param(I::block(b2, BlockParam::attn_scale))[c] == 1.0);
      REQUIRE(a.param(I::block(b2, BlockParam::mlp_scale))[c] == 1.0);
    }
  }
  for (int i = 0; i < kTiny.skip_count() * kTiny.dim; ++i) REQUIRE(a.param(I::skip_weights)[i] == 1.0);
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
  using SI = Gpt<kTinyShared, double>::Index;
  using FI = Gpt<unrolled, double>::Index;
  auto copy = [](const double* from, double* to, std::size_t n) { std::copy(from, from + n, to); };
  const auto& st = Gpt<kTinyShared, double>::param_table;
  const auto& ft = Gpt<unrolled, double>::param_table;
  copy(shared.param(SI::tok_emb), full.param(FI::tok_emb), st[SI::tok_emb].numel());
  copy(shared.param(SI::skip_weights), full.param(FI::skip_weights), st[SI::skip_weights].numel());
  for (int v = 0; v < 4; ++v)
    for (int p = 0; p < kBlockParamCount; ++p)
      copy(shared.param(SI::block(v % 2, BlockParam(p))), full.param(FI::block(v, BlockParam(p))),
           ft[FI::block(v, BlockParam(p))].numel());
  const auto t = random_tokens(17, 64, 9);
  const std::vector<std::int32_t> x(t.begin(), t.end() - 1), y(t.begin() + 1, t.end());
  shared.zero_grad();
  full.zero_grad();
  REQUIRE(shared.forward(x, y) == Approx(full.forward(x, y)).epsilon(1e-13));
  shared.backward();
  full.backward();
  for (int b = 0; b < 2; ++b)
    for (int p = 0; p < kBlockParamCount; ++p) {
      const auto& info = st[SI::block(b, BlockParam(p))];
      for (std::size_t i = 0; i < info.numel(); ++i) {
        const double sum = full.grad(FI::block(b, BlockParam(p)))[i] + full.grad(FI::block(b + 2, BlockParam(p)))[i];
        REQUIRE(shared.grad(SI::block(b, BlockParam(p)))[i] == Approx(sum).epsilon(1e-10).margin(1e-14));
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
