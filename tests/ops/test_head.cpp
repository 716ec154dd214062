// Logit softcap and mean cross-entropy.
#include <catch2/catch.hpp>

#include "pgolf/ops/cpu/cross_entropy.hpp"
#include "pgolf/ops/cpu/distill.hpp"
#include "pgolf/ops/cpu/softcap.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("softcap forward and backward", "[forward][gradcheck][softcap]") {
  auto z = randn(50, 80, 40.0);
  std::vector<double> y(z.size());
  ops::cpu::softcap_forward(z.data(), z.size(), 30.0, y.data());
  for (std::size_t i = 0; i < z.size(); ++i) {
    REQUIRE(y[i] == Approx(30.0 * std::tanh(z[i] / 30.0)).epsilon(1e-15));
    REQUIRE(std::abs(y[i]) < 30.0);
  }
  const auto r = randn(z.size(), 81);
  auto loss = [&] {
    ops::cpu::softcap_forward(z.data(), z.size(), 30.0, y.data());
    return weighted_sum(r, y.data());
  };
  loss();
  std::vector<double> dz(z.size());
  ops::cpu::softcap_backward(r.data(), y.data(), z.size(), 30.0, dz.data());
  REQUIRE(fd_max_error(loss, z.data(), dz.data(), z.size()) < 1e-6);
}

TEST_CASE("cross-entropy forward is the mean negative log-softmax", "[forward][cross_entropy]") {
  const int N = 4, V = 9;
  auto z = randn(N * V, 82, 3.0);
  const std::vector<std::int32_t> y = {0, 8, 3, 3};
  std::vector<double> rows(N);
  const double loss = ops::cpu::cross_entropy_forward(z.data(), y.data(), N, V, rows.data());
  double mean = 0;
  for (int n = 0; n < N; ++n) {
    double s = 0;
    for (int i = 0; i < V; ++i) s += std::exp(z[n * V + i]);
    const double nll = -std::log(std::exp(z[n * V + y[n]]) / s);
    REQUIRE(rows[n] == Approx(nll).epsilon(1e-13));
    mean += nll / N;
  }
  REQUIRE(loss == Approx(mean).epsilon(1e-13));
  // Uniform logits give log(V).
  std::vector<double> flat(N * V, 0.25);
  REQUIRE(ops::cpu::cross_entropy_forward(flat.data(), y.data(), N, V, rows.data()) == Approx(std::log(9.0)));
}

TEST_CASE("cross-entropy backward matches finite differences", "[gradcheck][cross_entropy]") {
  const int N = 5, V = 7;
  auto z = randn(N * V, 83, 2.0);
  const std::vector<std::int32_t> y = {6, 0, 2, 2, 5};
  std::vector<double> rows(N), dz(N * V);
  auto loss = [&] { return ops::cpu::cross_entropy_forward(z.data(), y.data(), N, V, rows.data()); };
  ops::cpu::cross_entropy_backward(z.data(), y.data(), N, V, 1.0 / N, dz.data());
  REQUIRE(fd_max_error(loss, z.data(), dz.data(), z.size()) < 1e-6);
}

TEST_CASE("cross-entropy rejects targets outside the vocabulary", "[forward][cross_entropy]") {
  std::vector<double> z(2 * 3), rows(2);
  const std::vector<std::int32_t> y = {0, 3};
  REQUIRE_THROWS_WITH(ops::cpu::cross_entropy_forward(z.data(), y.data(), 2, 3, rows.data()),
                      Catch::Contains("target id 3"));
}

TEST_CASE("cross-entropy skips unscored rows (target < 0): mean over scored rows, zero gradient",
          "[gradcheck][cross_entropy]") {
  const std::size_t N = 5;
  const int V = 4;
  std::vector<double> z(N * V), rows(N), dz(N * V);
  for (std::size_t i = 0; i < z.size(); ++i) z[i] = std::sin(0.7 * double(i)) * 2.0;
  const std::vector<std::int32_t> y = {1, -1, 3, -1, 0};
  const double loss = ops::cpu::cross_entropy_forward(z.data(), y.data(), N, V, rows.data());
  REQUIRE(rows[1] == 0.0);
  REQUIRE(rows[3] == 0.0);
  REQUIRE(loss == Approx((rows[0] + rows[2] + rows[4]) / 3.0).epsilon(1e-15));
  REQUIRE(ops::cpu::scored_rows(y.data(), N) == 3);
  ops::cpu::cross_entropy_backward(z.data(), y.data(), N, V, 1.0 / 3.0, dz.data());
  for (int i = 0; i < V; ++i) REQUIRE(dz[1 * V + i] == 0.0);
  auto f = [&] { return ops::cpu::cross_entropy_forward(z.data(), y.data(), N, V, rows.data()); };
  REQUIRE(fd_max_error(f, z.data(), dz.data(), z.size()) < 1e-6);
}

// Self-distillation (ops/cpu/distill.hpp): the loss against its definition, written out here.
TEST_CASE("distillation loss equals alpha tau^2 KL + (1 - alpha) CE, both normalisations", "[forward][distill]") {
  const std::size_t N = 6;
  const int V = 11;
  const auto zs = randn(N * V, 84, 3.0), zt = randn(N * V, 85, 3.0);
  const std::vector<std::int32_t> y = {3, -1, 0, 10, 4, 4};
  std::vector<double> rows(N);
  for (bool per_sequence : {false, true}) {
    const ops::cpu::DistillOptions o{.temperature = 2.0, .alpha = 0.7, .per_sequence = per_sequence, .batch_rows = 2};
    double kl = 0, ce = 0;
    for (std::size_t n = 0; n < N; ++n) {
      if (y[n] < 0) continue;
      double ss = 0, st = 0, s1 = 0;
      for (int i = 0; i < V; ++i) ss += std::exp(zs[n * V + i] / 2), st += std::exp(zt[n * V + i] / 2), s1 += std::exp(zs[n * V + i]);
      for (int i = 0; i < V; ++i) {
        const double pt = std::exp(zt[n * V + i] / 2) / st, ps = std::exp(zs[n * V + i] / 2) / ss;
        kl += pt * std::log(pt / ps);
      }
      ce += -std::log(std::exp(zs[n * V + y[n]]) / s1);
    }
    const double expected = 0.7 * 4 * kl / (per_sequence ? 2.0 : 5.0) + 0.3 * ce / 5.0;
    CHECK(ops::cpu::distill_forward(zs.data(), zt.data(), y.data(), N, V, o, rows.data()) == Approx(expected).epsilon(1e-13));
    CHECK(rows[1] == 0.0);  // the student's CE per row, as evaluation reads it
  }
  // alpha = 0 is the cross-entropy; a teacher equal to the student adds nothing at any alpha.
  const ops::cpu::DistillOptions ce_only{.alpha = 0.0};
  CHECK(ops::cpu::distill_forward(zs.data(), zt.data(), y.data(), N, V, ce_only, rows.data()) ==
        Approx(ops::cpu::cross_entropy_forward(zs.data(), y.data(), N, V, rows.data())).epsilon(1e-15));
  CHECK(ops::cpu::distill_forward(zs.data(), zs.data(), y.data(), N, V, {.alpha = 1.0}, rows.data()) ==
        Approx(0.0).margin(1e-13));
  CHECK_THROWS_WITH(ops::cpu::DistillOptions{.temperature = 0.0}.validate(), Catch::Contains("distill_temperature"));
  CHECK_THROWS_WITH(ops::cpu::DistillOptions{.alpha = 1.5}.validate(), Catch::Contains("distill_alpha"));
}

TEST_CASE("distillation backward matches finite differences", "[gradcheck][distill]") {
  const std::size_t N = 5;
  const int V = 7;
  auto zs = randn(N * V, 86, 2.0);
  const auto zt = randn(N * V, 87, 2.0);
  const std::vector<std::int32_t> y = {6, 0, -1, 2, 5};
  std::vector<double> rows(N), dz(N * V);
  for (bool per_sequence : {false, true}) {
    const ops::cpu::DistillOptions o{.temperature = 1.7, .alpha = 0.6, .per_sequence = per_sequence, .batch_rows = 3};
    auto loss = [&] { return ops::cpu::distill_forward(zs.data(), zt.data(), y.data(), N, V, o, rows.data()); };
    ops::cpu::distill_backward(zs.data(), zt.data(), y.data(), N, V, o, 1.0, dz.data());
    CHECK(fd_max_error(loss, zs.data(), dz.data(), zs.size()) < 1e-7);
    // In place (dz aliasing the student logits), as the head runs it.
    auto in_place = zs;
    ops::cpu::distill_backward(in_place.data(), zt.data(), y.data(), N, V, o, 1.0, in_place.data());
    CHECK(in_place == dz);
  }
}
