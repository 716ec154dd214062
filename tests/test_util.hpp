// Test helpers: reproducible random tensors and central finite differences in double precision.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/attention.hpp"

namespace pgolf::test {

// ||a - b|| / ||b|| (||a - b|| where b is all zero, e.g. gradients of a one-position sequence);
// infinite where a holds a NaN or an infinity, or the sizes differ, so a bound on it cannot pass them.
template <class A, class B>
double rel_l2(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(double(a[i]))) return INFINITY;
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The message of the pgolf::Error f throws, or "no error".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

inline std::vector<double> randn(std::size_t n, std::uint32_t stream, double scale = 1.0) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * normal01(12345, stream, i);
  return v;
}

inline std::vector<double> randu(std::size_t n, std::uint32_t stream, double lo, double hi) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * uniform01(12345, stream, i);
  return v;
}

// Relative error with a floor on the denominator: below the floor the check becomes absolute,
// since central differences carry roundoff of about eps * |loss| / h whatever the gradient's size.
inline double rel_err(double analytic, double numeric, double floor = 1e-6) {
  return std::abs(analytic - numeric) / std::max(floor, std::abs(analytic) + std::abs(numeric));
}

// Largest relative error between grad[i] and the central difference of loss() in x[i], over the
// given indices (all of x when indices is empty).
inline double fd_max_error(const std::function<double()>& loss, double* x, const double* grad, std::size_t n,
                           std::vector<std::size_t> indices = {}, double h = 1e-5, double floor = 1e-6) {
  if (indices.empty())
    for (std::size_t i = 0; i < n; ++i) indices.push_back(i);
  double worst = 0;
  for (std::size_t i : indices) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    worst = std::max(worst, rel_err(grad[i], (up - down) / (2 * h), floor));
  }
  return worst;
}

// Weighted sum <r, y>: a scalar whose gradient with respect to y is r.
inline double weighted_sum(const std::vector<double>& r, const double* y) {
  double s = 0;
  for (std::size_t i = 0; i < r.size(); ++i) s += r[i] * y[i];
  return s;
}

// Document starts (ops::cpu::document_starts) of B rows of T tokens whose BOS (id 1) sit at the
// positions listed per row (positions >= T ignored; every other id 9). No rows listed: empty.
inline std::vector<std::int32_t> doc_starts_at(int B, int T, const std::vector<std::vector<int>>& bos) {
  if (bos.empty()) return {};
  std::vector<std::int32_t> ids(std::size_t(B) * T, 9), starts(ids.size());
  for (int b = 0; b < B && b < int(bos.size()); ++b)
    for (const int t : bos[std::size_t(b)])
      if (t < T) ids[std::size_t(b) * T + t] = 1;
  pgolf::ops::cpu::document_starts(ids.data(), B, T, 1, starts.data());
  return starts;
}

}  // namespace pgolf::test
