#include <catch2/catch.hpp>

#include <cmath>

#include "pgolf/core/rng.hpp"

using namespace pgolf;

TEST_CASE("Philox4x32-10 matches the published known-answer vectors", "[forward][rng]") {
  // Known-answer tests of the Random123 distribution (kat_vectors, philox4x32_10).
  auto r = philox4x32_10(Philox4x32{{0, 0, 0, 0}}, 0, 0);
  CHECK(r.v[0] == 0x6627e8d5u);
  CHECK(r.v[1] == 0xe169c58du);
  CHECK(r.v[2] == 0xbc57ac4cu);
  CHECK(r.v[3] == 0x9b00dbd8u);
  r = philox4x32_10(Philox4x32{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
  CHECK(r.v[0] == 0x408f276du);
  CHECK(r.v[1] == 0x41c83b0eu);
  CHECK(r.v[2] == 0xa20bc7c6u);
  CHECK(r.v[3] == 0x6d5451fdu);
  r = philox4x32_10(Philox4x32{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
  CHECK(r.v[0] == 0xd16cfe09u);
  CHECK(r.v[1] == 0x94fdccebu);
  CHECK(r.v[2] == 0x5001e420u);
  CHECK(r.v[3] == 0x24126ea1u);
}

TEST_CASE("draws are pure functions of (seed, stream, index) with the right moments", "[forward][rng]") {
  REQUIRE(normal01(7, 3, 11) == normal01(7, 3, 11));
  REQUIRE(normal01(7, 3, 11) != normal01(8, 3, 11));
  REQUIRE(normal01(7, 3, 11) != normal01(7, 4, 11));
  const int n = 200000;
  double su = 0, su2 = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = uniform01(1, 2, i), z = normal01(1, 2, i);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    su += u, su2 += u * u, sn += z, sn2 += z * z;
  }
  // Bounds are ~5 standard errors of each estimate.
  CHECK(std::abs(su / n - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
  CHECK(std::abs(su2 / n - 1.0 / 3) < 5 * std::sqrt(4.0 / 45 / n));
  CHECK(std::abs(sn / n) < 5 * std::sqrt(1.0 / n));
  CHECK(std::abs(sn2 / n - 1.0) < 5 * std::sqrt(2.0 / n));
}
