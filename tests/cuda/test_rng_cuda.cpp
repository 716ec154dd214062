// The counter-based generator gives the same draws on the GPU as on the CPU, so both backends
// initialise identical weights.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "pgolf/core/rng.hpp"
#include "rng_kernels.hpp"

TEST_CASE("Philox draws on the device equal the host draws", "[cuda][rng]") {
  const std::size_t n = 100000;
  std::vector<double> u(n), z(n);
  draw_on_device(1337, 42, n, u.data(), z.data());
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(u[i] == pgolf::uniform01(1337, 42, i));  // integer pipeline: bit-exact
    // log/cos on the device are within 1-2 ulp of the host's; the weights are then cast to float.
    REQUIRE(std::abs(z[i] - pgolf::normal01(1337, 42, i)) <= 1e-14 * (1 + std::abs(z[i])));
  }
}
