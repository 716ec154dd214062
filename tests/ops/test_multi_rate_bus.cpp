// The Multi-Rate Bus recurrence and gated read-out: decays as PRISM.md's table, the reference's
// closed form on short sequences, finite differences in double, and T = 4096 in float (where the
// reference's parallel form overflows) against the double recurrence.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "../test_util.hpp"
#include "pgolf/ops/cpu/multi_rate_bus.hpp"

using namespace pgolf::ops::cpu;
using pgolf::test::fd_max_error;
using pgolf::test::randn;
using pgolf::test::weighted_sum;

TEST_CASE("MRB decays are log-spaced from delta0 to delta_max", "[forward]") {
  const auto g = mrb_decays(4, std::log(2.0), 8 * std::log(2.0));
  REQUIRE(g.size() == 4);
  CHECK(g[0] == Approx(0.5).epsilon(1e-12));
  CHECK(g[1] == Approx(0.25).epsilon(1e-12));
  CHECK(g[2] == Approx(0.0625).epsilon(1e-12));
  CHECK(g[3] == Approx(0.00390625).epsilon(1e-12));
  CHECK(mrb_decays(1, 0.3, 5.0)[0] == Approx(std::exp(-0.3)));
  CHECK_THROWS_WITH(mrb_decays(0, 0.5, 1.0), Catch::Contains("num_rates must be at least 1"));
  CHECK_THROWS_WITH(mrb_decays(2, 2.0, 1.0), Catch::Contains("delta0 <= delta_max"));
}

TEST_CASE("MRB scan equals the reference's closed form and settles on a constant input", "[forward]") {
  const MrbShape s{2, 40, 8, 4};
  const auto gamma = mrb_decays(4, 0.3466, 16.64);
  const auto z = randn(std::size_t(s.B) * s.T * s.D, 1);
  std::vector<double> h(z.size());
  mrb_scan_forward(z.data(), s, gamma, h.data());
  for (int b = 0; b < s.B; ++b)
    for (int c = 0; c < s.D; ++c) {
      const double g = gamma[std::size_t(c / s.group_width())];
      double cum = 0;  // h(t) = g^t * sum_{u<=t} g^-u (1-g) z(u), fine in double for T = 40
      for (int t = 0; t < s.T; ++t) {
        cum += std::pow(g, -double(t)) * (1 - g) * z[s.at(b, t, c)];
        CHECK(h[s.at(b, t, c)] == Approx(std::pow(g, double(t)) * cum).epsilon(1e-9).margin(1e-12));
      }
    }
  std::vector<double> ones(z.size(), 3.0), hc(z.size());
  mrb_scan_forward(ones.data(), MrbShape{2, 40, 8, 4}, mrb_decays(4, std::log(2.0), 8 * std::log(2.0)), hc.data());
  CHECK(hc[s.at(1, 39, 0)] == Approx(3.0).epsilon(1e-9));  // the slowest group has settled too
  CHECK_THROWS_WITH(mrb_scan_forward(z.data(), MrbShape{2, 40, 8, 3}, mrb_decays(3, 0.5, 1.0), h.data()),
                    Catch::Contains("do not divide"));
}

TEST_CASE("MRB scan is finite and exact at T = 4096 in float", "[forward]") {
  const MrbShape s{1, 4096, 8, 4};
  const auto gamma = mrb_decays(4, 0.3466, 16.64);  // the 300m preset: the reference overflows here
  const auto z = randn(std::size_t(s.T) * s.D, 2, 5.0);
  std::vector<double> hd(z.size());
  mrb_scan_forward(z.data(), s, gamma, hd.data());
  std::vector<float> zf(z.begin(), z.end()), hf(z.size());
  mrb_scan_forward(zf.data(), s, gamma, hf.data());
  double worst = 0;
  for (std::size_t i = 0; i < hd.size(); ++i) {
    REQUIRE(std::isfinite(hf[i]));
    worst = std::max(worst, std::abs(double(hf[i]) - hd[i]));
  }
  CHECK(worst < 1e-5);
}

TEST_CASE("MRB scan and gate backward match finite differences", "[gradcheck]") {
  const MrbShape s{2, 13, 12, 3};
  const auto gamma = mrb_decays(3, 0.2, 3.0);
  auto z = randn(std::size_t(s.B) * s.T * s.D, 3);
  auto gate = randn(std::size_t(s.B) * s.T * s.K, 4);
  const auto r = randn(z.size(), 5);
  std::vector<double> h(z.size()), u(z.size());
  auto loss = [&] {
    mrb_scan_forward(z.data(), s, gamma, h.data());
    mrb_gate_forward(h.data(), gate.data(), s, u.data());
    return weighted_sum(r, u.data());
  };
  loss();
  std::vector<double> dh(z.size()), dgate(gate.size()), dz(z.size());
  mrb_gate_backward(r.data(), h.data(), gate.data(), s, dh.data(), dgate.data());
  mrb_scan_backward(dh.data(), s, gamma, dz.data());
  CHECK(fd_max_error(loss, z.data(), dz.data(), z.size()) < 1e-6);
  CHECK(fd_max_error(loss, gate.data(), dgate.data(), gate.size()) < 1e-6);
}
