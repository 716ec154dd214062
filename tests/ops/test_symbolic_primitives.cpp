// PRISM's symbolic primitives: each output against its formula (odd and even widths), the cosine's
// clamp as torch's cosine_similarity, and the backward against finite differences in double.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "../test_util.hpp"
#include "pgolf/ops/cpu/symbolic_primitives.hpp"

using namespace pgolf::test;
using pgolf::ops::cpu::symbolic_primitives_backward;
using pgolf::ops::cpu::symbolic_primitives_forward;

namespace {
double sig(double v) { return 1 / (1 + std::exp(-v)); }
}  // namespace

TEST_CASE("symbolic primitives forward match their formulas", "[forward]") {
  for (const int D : {6, 7}) {
    const auto x = randn(std::size_t(D), 31), a1 = randn(std::size_t(D), 32), a2 = randn(std::size_t(D), 33);
    std::vector<double> y(6 * std::size_t(D));
    symbolic_primitives_forward(x.data(), a1.data(), a2.data(), D, y.data());
    const int h = (D + 1) / 2;
    double uv = 0, uu = 0, vv = 0, z = 0, sel = 0, cnt = 0;
    for (int i = 0; i < h; ++i) {
      const double u = x[i], v = h + i < D ? x[h + i] : 0.0;
      uv += u * v, uu += u * u, vv += v * v;
    }
    for (int i = 0; i < D; ++i) z += std::exp(a1[i]);
    for (int i = 0; i < D; ++i) sel += std::exp(a1[i]) / z * x[i], cnt += sig(x[i]) / D;
    for (int i = 0; i < D; ++i) {
      CHECK(y[0 * D + i] == Approx(uv / std::sqrt(uu * vv)).epsilon(1e-12));
      CHECK(y[1 * D + i] == Approx(sig(a1[i]) * x[i] + (1 - sig(a1[i])) * a2[i]).epsilon(1e-12));
      CHECK(y[2 * D + i] == Approx(sel).epsilon(1e-12));
      CHECK(y[3 * D + i] == x[(i + D - 1) % D]);
      CHECK(y[4 * D + i] == Approx(x[i] * sig(5 * (x[i] - a1[i]))).epsilon(1e-12));
      CHECK(y[5 * D + i] == Approx(cnt).epsilon(1e-12));
    }
  }
}

TEST_CASE("compare clamps each half's norm at 1e-8 as torch's cosine_similarity", "[forward]") {
  // Checked against torch 1.13: F.cosine_similarity([3e-5, 0], [1e-4, 2e-4], eps=1e-8) = 0.4472...,
  // and a half below the clamp: ([1e-9, 0], [1e-9, 1e-9]) -> 0.01.
  std::vector<double> x{3e-5, 0.0, 1e-4, 2e-4}, a(4, 0.0), y(24);
  symbolic_primitives_forward(x.data(), a.data(), a.data(), 4, y.data());
  CHECK(y[0] == Approx(0.4472135954999579).epsilon(1e-12));
  x = {1e-9, 0.0, 1e-9, 1e-9};
  symbolic_primitives_forward(x.data(), a.data(), a.data(), 4, y.data());
  CHECK(y[0] == Approx(0.01).epsilon(1e-12));
}

TEST_CASE("symbolic primitives backward matches finite differences", "[gradcheck]") {
  for (const int D : {8, 5}) {
    auto x = randn(std::size_t(D), 41, 1.5), a1 = randn(std::size_t(D), 42), a2 = randn(std::size_t(D), 43);
    const auto r = randn(6 * std::size_t(D), 44);
    std::vector<double> y(r.size()), dx(D), da1(D), da2(D);
    auto loss = [&] {
      symbolic_primitives_forward(x.data(), a1.data(), a2.data(), D, y.data());
      return weighted_sum(r, y.data());
    };
    symbolic_primitives_backward(r.data(), x.data(), a1.data(), a2.data(), D, dx.data(), da1.data(), da2.data());
    CHECK(fd_max_error(loss, x.data(), dx.data(), std::size_t(D)) < 1e-6);
    CHECK(fd_max_error(loss, a1.data(), da1.data(), std::size_t(D)) < 1e-6);
    CHECK(fd_max_error(loss, a2.data(), da2.data(), std::size_t(D)) < 1e-6);
  }
}
