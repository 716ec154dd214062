// fp16 conversion and the reference's int8 quantisation.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "pgolf/core/half.hpp"
#include "pgolf/export/int8.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("fp16 conversion: known values, rounding to even, exact round trip of every half", "[forward][export]") {
  CHECK(float_to_half_bits(1.0f) == 0x3c00);
  CHECK(float_to_half_bits(-2.0f) == 0xc000);
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);        // rounds up to inf
  CHECK(float_to_half_bits(1.0f / 3.0f) == 0x3555);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(float_to_half_bits(std::ldexp(1.0f, -26)) == 0x0000);  // below half of it
  CHECK(float_to_half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even
  CHECK(float_to_half_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even (up)
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = half_bits_to_float(std::uint16_t(h));
    if (std::isnan(f)) continue;
    REQUIRE(float_to_half_bits(f) == h);
  }
}

TEST_CASE("int8 per-row quantisation: hand-checked row", "[forward][export]") {
  // |row| sorted: 0.25 0.5 1 2; the 99.99984th percentile interpolates at 2.9999952 -> 1.9999952.
  const float row[4] = {0.5f, -1.0f, 0.25f, 2.0f};
  const Int8Rows q = quantize_int8_rows(row, 1, 4);
  const float clip = 1.0f + float(kInt8ClipQuantile * 3 - 2) * 1.0f;
  const float scale = clip / 127.0f;
  CHECK(half_bits_to_float(q.scales[0]) == half_bits_to_float(float_to_half_bits(scale)));
  CHECK(q.q[0] == 32);    // 0.5 / s = 31.75
  CHECK(q.q[1] == -64);   // -63.50002
  CHECK(q.q[2] == 16);    // 15.875
  CHECK(q.q[3] == 127);   // clipped to the percentile
}

TEST_CASE("int8 per-row quantisation: direct formula, error bound, scale floor", "[forward][export]") {
  const int rows = 6, cols = 300;
  auto w = randn(std::size_t(rows) * cols, 300, 0.05);
  w[7] = 3.0;  // an outlier: with 300 columns the percentile sits just below the row maximum
  for (int j = 0; j < cols; ++j) w[5 * cols + j] *= 1e-3;  // a tiny row hits the 1/127 floor
  const Int8Rows q = quantize_int8_rows(w.data(), rows, cols);
  std::vector<double> back(w.size());
  dequantize_int8_rows(q, back.data());
  for (int r = 0; r < rows; ++r) {
    std::vector<float> mag(cols);
    for (int j = 0; j < cols; ++j) mag[j] = std::abs(float(w[r * cols + j]));
    std::sort(mag.begin(), mag.end());
    const double pos = kInt8ClipQuantile * (cols - 1);
    const float clip = mag[std::size_t(pos)] + float(pos - std::floor(pos)) * (mag[std::size_t(pos) + 1] - mag[std::size_t(pos)]);
    const float scale = std::max(clip / 127.0f, 1.0f / 127.0f);
    CHECK(q.scales[r] == float_to_half_bits(scale));
    for (int j = 0; j < cols; ++j) {
      const float c = std::clamp(float(w[r * cols + j]), -clip, clip);
      REQUIRE(q.q[r * cols + j] == std::int8_t(std::clamp(std::nearbyint(c / scale), -127.0f, 127.0f)));
      // Unclipped entries round-trip to within half a step (plus the fp16 rounding of the scale).
      if (std::abs(w[r * cols + j]) <= clip)
        REQUIRE(std::abs(back[r * cols + j] - w[r * cols + j]) <= 0.5 * scale + 127 * scale * 1e-3);
    }
  }
  CHECK(half_bits_to_float(q.scales[5]) == half_bits_to_float(float_to_half_bits(1.0f / 127.0f)));
  CHECK(q.q[7] == 127);  // the outlier lands on the clip
}

TEST_CASE("int8 per-tensor quantisation", "[forward][export]") {
  auto x = randn(1000, 301, 0.1);
  const Int8Tensor q = quantize_int8_tensor(x.data(), x.size());
  std::vector<double> back(x.size());
  dequantize_int8_tensor(q, back.data());
  double mx = 0;
  for (double v : x) mx = std::max(mx, std::abs(v));
  CHECK(q.scale <= mx / 127.0 + 1e-9);
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::abs(x[i]) <= q.scale * 127) REQUIRE(std::abs(back[i] - x[i]) <= 0.5 * q.scale + 1e-7);
  const std::vector<double> zeros(10, 0.0);
  CHECK(quantize_int8_tensor(zeros.data(), zeros.size()).scale == 1.0f);
}
