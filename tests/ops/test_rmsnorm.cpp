#include <catch2/catch.hpp>

#include "pgolf/ops/cpu/rmsnorm.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("rmsnorm forward matches x / sqrt(mean(x^2) + eps)", "[forward][rmsnorm]") {
  const int rows = 3, w = 8;
  const double eps = 1e-6;
  auto x = randn(rows * w, 10, 3.0);
  std::vector<double> y(rows * w), rstd(rows);
  ops::cpu::rmsnorm_forward(x.data(), rows, w, eps, y.data(), rstd.data());
  for (int r = 0; r < rows; ++r) {
    double ms = 0;
    for (int i = 0; i < w; ++i) ms += x[r * w + i] * x[r * w + i] / w;
    for (int i = 0; i < w; ++i) REQUIRE(y[r * w + i] == Approx(x[r * w + i] / std::sqrt(ms + eps)).epsilon(1e-14));
    REQUIRE(rstd[r] == Approx(1 / std::sqrt(ms + eps)).epsilon(1e-14));
  }
}

TEST_CASE("rmsnorm backward matches finite differences, per token and per head", "[gradcheck][rmsnorm]") {
  for (int w : {16, 4}) {  // width = dim (per token) or head_dim (per head)
    const int rows = 6;
    auto x = randn(rows * w, 11, 2.0);
    const auto r = randn(rows * w, 12);
    std::vector<double> y(rows * w), rstd(rows), dx(rows * w, 7.0);
    auto loss = [&] {
      ops::cpu::rmsnorm_forward(x.data(), rows, w, 1e-6, y.data(), rstd.data());
      return weighted_sum(r, y.data());
    };
    loss();
    ops::cpu::rmsnorm_backward(r.data(), y.data(), rstd.data(), rows, w, dx.data(), false);
    REQUIRE(fd_max_error(loss, x.data(), dx.data(), x.size()) < 1e-6);
    loss();  // restore y and rstd at the unperturbed x
    // Accumulating form adds onto what is there.
    std::vector<double> acc(rows * w, 1.0);
    ops::cpu::rmsnorm_backward(r.data(), y.data(), rstd.data(), rows, w, acc.data(), true);
    for (int i = 0; i < rows * w; ++i) REQUIRE(acc[i] == Approx(1.0 + dx[i]).epsilon(1e-14));
  }
}
