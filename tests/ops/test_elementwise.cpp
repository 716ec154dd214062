// resid_mix, per-channel scales and the U-Net skip add.
#include <catch2/catch.hpp>

#include "pgolf/ops/cpu/channel_scale.hpp"
#include "pgolf/ops/cpu/resid_mix.hpp"
#include "pgolf/ops/cpu/skip_add.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("resid_mix forward and backward", "[forward][gradcheck][resid_mix]") {
  const int N = 5, d = 40;  // d > 32 exercises more than one channel chunk
  auto x = randn(N * d, 60), x0 = randn(N * d, 61), mix = randn(2 * d, 62);
  std::vector<double> out(N * d);
  ops::cpu::resid_mix_forward(x.data(), x0.data(), mix.data(), N, d, out.data());
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < d; ++c)
      REQUIRE(out[n * d + c] == Approx(mix[c] * x[n * d + c] + mix[d + c] * x0[n * d + c]).epsilon(1e-15));

  const auto r = randn(N * d, 63);
  auto loss = [&] {
    ops::cpu::resid_mix_forward(x.data(), x0.data(), mix.data(), N, d, out.data());
    return weighted_sum(r, out.data());
  };
  std::vector<double> dx(N * d), dx0(N * d, 0.0), dmix(2 * d, 0.0);
  ops::cpu::resid_mix_backward(r.data(), x.data(), x0.data(), mix.data(), N, d, dx.data(), dx0.data(), dmix.data());
  REQUIRE(fd_max_error(loss, x.data(), dx.data(), x.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, x0.data(), dx0.data(), x0.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, mix.data(), dmix.data(), mix.size()) < 1e-6);
}

TEST_CASE("per-channel scaled residual forward and backward", "[forward][gradcheck][channel_scale]") {
  const int N = 4, d = 36;
  auto x = randn(N * d, 64), a = randn(d, 65), f = randn(N * d, 66);
  std::vector<double> out(N * d);
  ops::cpu::channel_scale_forward(x.data(), a.data(), f.data(), N, d, out.data());
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < d; ++c) REQUIRE(out[n * d + c] == Approx(x[n * d + c] + a[c] * f[n * d + c]).epsilon(1e-15));

  const auto r = randn(N * d, 67);
  auto loss = [&] {
    ops::cpu::channel_scale_forward(x.data(), a.data(), f.data(), N, d, out.data());
    return weighted_sum(r, out.data());
  };
  std::vector<double> df(N * d), da(d, 0.0);
  ops::cpu::channel_scale_backward(r.data(), a.data(), f.data(), N, d, df.data(), da.data());
  REQUIRE(fd_max_error(loss, f.data(), df.data(), f.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, a.data(), da.data(), a.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, x.data(), r.data(), x.size()) < 1e-6);  // identity path
}

TEST_CASE("U-Net skip add forward and backward", "[forward][gradcheck][skip_add]") {
  const int N = 3, d = 33;
  auto x = randn(N * d, 68), w = randn(d, 69), skip = randn(N * d, 70);
  const auto x_before = x;
  ops::cpu::skip_add_forward(x.data(), w.data(), skip.data(), N, d);
  for (int i = 0; i < N * d; ++i) REQUIRE(x[i] == Approx(x_before[i] + w[i % d] * skip[i]).epsilon(1e-15));

  const auto r = randn(N * d, 71);
  std::vector<double> y(N * d);
  auto loss = [&] {
    y = x_before;
    ops::cpu::skip_add_forward(y.data(), w.data(), skip.data(), N, d);
    return weighted_sum(r, y.data());
  };
  std::vector<double> dskip(N * d, 0.0), dw(d, 0.0);
  ops::cpu::skip_add_backward(r.data(), w.data(), skip.data(), N, d, dskip.data(), dw.data());
  REQUIRE(fd_max_error(loss, skip.data(), dskip.data(), skip.size()) < 1e-6);
  REQUIRE(fd_max_error(loss, w.data(), dw.data(), w.size()) < 1e-6);
}
