// The register layout of ops/cuda/mma.cuh's m16n8k16 product, on the device: each loader and the
// accumulator-to-operand reuse against a double reference on the same bf16 values. A wrong entry
// in the fragment table moves elements, and random operands then miss by O(1), far past rounding.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "mma_kernels.hpp"
#include "pgolf/core/rng.hpp"

namespace {
std::vector<float> uniform(std::size_t n, std::uint32_t stream) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = float(2 * pgolf::uniform01(7, stream, i) - 1);
  return v;
}
float bf16_round(double x) {  // round to nearest even, as the device's conversion
  const float f = float(x);
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}
}  // namespace

TEST_CASE("mma.sync m16n8k16: every loader and the accumulator reused as A match a double reference",
          "[cuda][mma]") {
  for (std::uint32_t seed = 0; seed < 3; ++seed) {
    std::vector<float> a = uniform(16 * 16, 10 * seed), b = uniform(16 * 8, 10 * seed + 1),
                       b2 = uniform(16 * 16, 10 * seed + 2), c = uniform(16 * 8, 10 * seed + 3);
    const MmaProducts d = mma_on_device(a, b, b2, c);  // a, b, b2 now hold their bf16 roundings
    // p = bf16(a b2), formed here from the double product (the device's fp32 sum may round across a
    // bf16 boundary the other way: one bf16 step, within the chained tolerance below).
    std::vector<float> p(16 * 16);
    for (int r = 0; r < 16; ++r)
      for (int n = 0; n < 16; ++n) {
        double s = 0;
        for (int k = 0; k < 16; ++k) s += double(a[r * 16 + k]) * b2[k * 16 + n];
        p[r * 16 + n] = bf16_round(s);
      }
    double worst = 0, worst_chained = 0;
    for (int r = 0; r < 16; ++r)
      for (int n = 0; n < 8; ++n) {
        double ref = c[r * 8 + n], mag = std::abs(ref), ref2 = c[r * 8 + n], mag2 = std::abs(ref2);
        for (int k = 0; k < 16; ++k) {
          ref += double(a[r * 16 + k]) * b[k * 8 + n];
          mag += std::abs(double(a[r * 16 + k]) * b[k * 8 + n]);
          ref2 += double(p[r * 16 + k]) * b[k * 8 + n];
          mag2 += std::abs(double(p[r * 16 + k]) * b[k * 8 + n]);
        }
        const std::size_t i = std::size_t(r) * 8 + n;
        INFO("seed " << seed << " row " << r << " column " << n);
        REQUIRE(std::isfinite(d.nk[i]));
        REQUIRE(d.nk[i] == d.kn[i]);  // the same operands, however they were loaded
        // fp32 accumulation of exact bf16 products (the tensor cores may truncate): some ulps of the sum.
        REQUIRE(std::abs(d.nk[i] - ref) <= 4e-6 * mag + 1e-7);
        REQUIRE(std::abs(d.chained[i] - ref2) <= 1e-2 * mag2 + 1e-6);
        worst = std::max(worst, std::abs(d.nk[i] - ref) / (mag + 1e-30));
        worst_chained = std::max(worst_chained, std::abs(d.chained[i] - ref2) / (mag2 + 1e-30));
      }
    std::printf("  mma seed %u: worst error / magnitude %.2e (direct), %.2e (chained)\n", seed, worst, worst_chained);
  }
}
