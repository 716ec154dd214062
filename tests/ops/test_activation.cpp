#include <catch2/catch.hpp>

#include "pgolf/ops/cpu/activation.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("relu^2 and LeakyReLU(0.5)^2 forward", "[forward][activation]") {
  const std::vector<double> u = {-2.0, -0.5, 0.0, 0.25, 3.0};
  std::vector<double> a(u.size()), l(u.size());
  ops::cpu::activation_forward<Activation::relu2>(u.data(), u.size(), a.data());
  ops::cpu::activation_forward<Activation::leaky_relu2>(u.data(), u.size(), l.data());
  for (std::size_t i = 0; i < u.size(); ++i) {
    const double relu = std::max(u[i], 0.0);
    const double leaky = u[i] > 0 ? u[i] : 0.5 * u[i];
    REQUIRE(a[i] == relu * relu);
    REQUIRE(l[i] == leaky * leaky);
  }
}

template <Activation A>
void check_activation_grad() {
  // Values kept away from the kink at 0, where the central difference straddles two branches.
  auto u = randu(64, 50, 0.05, 2.0);
  for (std::size_t i = 0; i < u.size(); i += 2) u[i] = -u[i];
  const auto r = randn(u.size(), 51);
  std::vector<double> y(u.size()), du(u.size());
  auto loss = [&] {
    ops::cpu::activation_forward<A>(u.data(), u.size(), y.data());
    return weighted_sum(r, y.data());
  };
  ops::cpu::activation_backward<A>(r.data(), u.data(), u.size(), du.data());
  REQUIRE(fd_max_error(loss, u.data(), du.data(), u.size()) < 1e-6);
}

TEST_CASE("activation backward matches finite differences", "[gradcheck][activation]") {
  check_activation_grad<Activation::relu2>();
  check_activation_grad<Activation::leaky_relu2>();
}
