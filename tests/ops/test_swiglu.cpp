// SwiGLU gating: forward against the formula, backward against finite differences in double,
// including large |a| where sigmoid saturates.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "../test_util.hpp"
#include "pgolf/ops/cpu/swiglu.hpp"

using namespace pgolf::test;

TEST_CASE("swiglu forward is silu(a) * b", "[forward]") {
  const std::vector<double> a{-30.0, -1.5, 0.0, 0.7, 25.0}, b{2.0, -3.0, 5.0, 1.5, -0.5};
  std::vector<double> out(a.size());
  pgolf::ops::cpu::swiglu_forward(a.data(), b.data(), a.size(), out.data());
  for (std::size_t i = 0; i < a.size(); ++i)
    CHECK(out[i] == Approx(a[i] / (1 + std::exp(-a[i])) * b[i]).epsilon(1e-14).margin(1e-300));
  CHECK(out[2] == 0.0);
}

TEST_CASE("swiglu backward matches finite differences", "[gradcheck]") {
  const std::size_t n = 64;
  auto a = randn(n, 21, 3.0), b = randn(n, 22);
  a[0] = 12.0, a[1] = -12.0;  // saturated sigmoid
  const auto r = randn(n, 23);
  std::vector<double> out(n), da(n), db(n);
  auto loss = [&] {
    pgolf::ops::cpu::swiglu_forward(a.data(), b.data(), n, out.data());
    return weighted_sum(r, out.data());
  };
  pgolf::ops::cpu::swiglu_backward(r.data(), a.data(), b.data(), n, da.data(), db.data());
  CHECK(fd_max_error(loss, a.data(), da.data(), n) < 1e-6);
  CHECK(fd_max_error(loss, b.data(), db.data(), n) < 1e-6);
}
