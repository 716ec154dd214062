// What the emulated kernel tests share: random inputs rounded as the kernels read them, and the
// worst error of an output as a fraction of what its rounding allows. Include after the generated
// *_kernels_emulated.hpp (it needs the emulation's bf16).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "pgolf/core/rng.hpp"

namespace pgolf::test::emulated {

using bf16 = __nv_bfloat16;

inline std::vector<double> randn(std::size_t n, std::uint32_t stream, double scale = 1.0) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * pgolf::normal01(77, stream, i);
  return v;
}
// Rounded to bf16 (resp. fp32), and v set to the rounded values, in double for the reference.
inline std::vector<bf16> to_bf16(std::vector<double>& v) {
  std::vector<bf16> b(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) b[i] = __float2bfloat16_rn(float(v[i])), v[i] = __bfloat162float(b[i]);
  return b;
}
inline std::vector<float> to_f32(std::vector<double>& v) {
  std::vector<float> f(v.begin(), v.end());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = f[i];
  return f;
}
inline double val(float x) { return x; }
inline double val(bf16 x) { return __bfloat162float(x); }
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// The worst error of one output against the reference, as a fraction of what rounding allows: for
// fp32, |got - want| / mag (mag the sum of the terms' magnitudes); for bf16, |got - want| /
// (|want| + 1e-3 mag) (rounding to bf16 is up to 2^-8 relative). Infinite on a NaN; printed and
// checked against its bound (fp32 1e-5, bf16 5e-3) when it goes.
struct Err {
  const char* name;
  bool bf;
  double worst = 0;
  Err(const char* n, bool is_bf16) : name(n), bf(is_bf16) {}
  void add(double got, double want, double mag) {
    if (!std::isfinite(got)) worst = INFINITY;
    if (got == want) return;
    worst = std::max(worst, std::abs(got - want) / (bf ? std::abs(want) + 1e-3 * mag : mag));
  }
  ~Err() {
    const double bound = bf ? 5e-3 : 1e-5;
    std::printf("  emulated %-36s worst %.2e (bound %.0e)\n", name, worst, bound);
    CHECK(worst < bound);
  }
};

}  // namespace pgolf::test::emulated
