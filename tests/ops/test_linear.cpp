#include <catch2/catch.hpp>

#include "pgolf/ops/cpu/linear.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("linear forward is x W^T", "[forward][linear]") {
  const int N = 5, in = 7, out = 3;
  auto x = randn(N * in, 20), W = randn(out * in, 21);
  std::vector<double> y(N * out, -1);
  ops::cpu::linear_forward(x.data(), W.data(), y.data(), N, in, out);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < out; ++o) {
      double s = 0;
      for (int i = 0; i < in; ++i) s += x[n * in + i] * W[o * in + i];
      REQUIRE(y[n * out + o] == Approx(s).epsilon(1e-13));
    }
  std::vector<float> xf(x.begin(), x.end()), Wf(W.begin(), W.end()), yf(N * out);
  ops::cpu::linear_forward(xf.data(), Wf.data(), yf.data(), N, in, out);
  for (int i = 0; i < N * out; ++i) REQUIRE(yf[i] == Approx(y[i]).epsilon(1e-5));
}

TEST_CASE("linear backward matches finite differences and accumulates dW", "[gradcheck][linear]") {
  const int N = 4, in = 6, out = 5;
  auto x = randn(N * in, 22), W = randn(out * in, 23);
  const auto r = randn(N * out, 24);
  std::vector<double> y(N * out), dx(N * in), dW(out * in, 0.0);
  auto loss = [&] {
    ops::cpu::linear_forward(x.data(), W.data(), y.data(), N, in, out);
    return weighted_sum(r, y.data());
  };
  ops::cpu::linear_backward(r.data(), x.data(), W.data(), dx.data(), dW.data(), N, in, out, false);
  REQUIRE(fd_max_error(loss, x.data(), dx.data(), x.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, W.data(), dW.data(), W.size()) < 1e-6);
  // A second use adds into dW and (on request) into dx.
  std::vector<double> dW2 = dW, dx2 = dx;
  ops::cpu::linear_backward(r.data(), x.data(), W.data(), dx2.data(), dW2.data(), N, in, out, true);
  for (std::size_t i = 0; i < dW.size(); ++i) REQUIRE(dW2[i] == Approx(2 * dW[i]).epsilon(1e-13));
  for (std::size_t i = 0; i < dx.size(); ++i) REQUIRE(dx2[i] == Approx(2 * dx[i]).epsilon(1e-13));
}
