#include <catch2/catch.hpp>

#include "pgolf/ops/cpu/rope.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("rope forward matches the half-split formula, partial dims pass through", "[forward][rope]") {
  const int B = 2, T = 5, H = 3, D = 8;
  for (int rd : {8, 4, 0}) {
    const double base = 10000.0;
    ops::cpu::RopeTable<double> rt(T, rd, base);
    auto x = randn(B * T * H * D, 30);
    std::vector<double> y(x.size(), -7);
    ops::cpu::rope_forward(x.data(), y.data(), B, T, H, D, rt);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < H; ++h) {
          const double* xi = &x[((b * T + t) * H + h) * D];
          const double* yi = &y[((b * T + t) * H + h) * D];
          for (int i = 0; i < rd / 2; ++i) {
            const double th = t * std::pow(base, -2.0 * i / rd);
            REQUIRE(yi[i] == Approx(xi[i] * std::cos(th) + xi[i + rd / 2] * std::sin(th)).margin(1e-14));
            REQUIRE(yi[i + rd / 2] == Approx(-xi[i] * std::sin(th) + xi[i + rd / 2] * std::cos(th)).margin(1e-14));
          }
          for (int i = rd; i < D; ++i) REQUIRE(yi[i] == xi[i]);
          if (t == 0)
            for (int i = 0; i < D; ++i) REQUIRE(yi[i] == Approx(xi[i]).margin(1e-15));
        }
  }
}

TEST_CASE("rope backward matches finite differences", "[gradcheck][rope]") {
  const int B = 2, T = 4, H = 2, D = 8;
  for (int rd : {8, 4}) {
    ops::cpu::RopeTable<double> rt(T, rd, 100.0);
    auto x = randn(B * T * H * D, 31);
    const auto r = randn(x.size(), 32);
    std::vector<double> y(x.size()), dx(x.size());
    auto loss = [&] {
      ops::cpu::rope_forward(x.data(), y.data(), B, T, H, D, rt);
      return weighted_sum(r, y.data());
    };
    ops::cpu::rope_backward(r.data(), dx.data(), B, T, H, D, rt);
    REQUIRE(fd_max_error(loss, x.data(), dx.data(), x.size()) < 1e-6);
  }
}

TEST_CASE("rope rejects odd dims and too-short tables", "[forward][rope]") {
  REQUIRE_THROWS_WITH(ops::cpu::RopeTable<double>(4, 3, 10000.0), Catch::Contains("even"));
  ops::cpu::RopeTable<double> rt(2, 4, 10000.0);
  std::vector<double> x(1 * 3 * 1 * 4), y(x.size());
  REQUIRE_THROWS_WITH(ops::cpu::rope_forward(x.data(), y.data(), 1, 3, 1, 4, rt), Catch::Contains("positions"));
}
