// LQER (TECHNIQUES.md 13.2): a low-rank correction of a quantised matrix's error, asymmetric in its
// two factors as the records store it. E = W - dequant(Wq) [rows, cols] ~ A B with
//   A [rows, r]: the top-r left singular directions (power iterations), INT2 codes in [-2, 1] with
//                one fp32 scale for the whole factor;
//   B [r, cols]: least squares for the quantised A (B = (Aq^T Aq)^-1 Aq^T E, so B absorbs A's
//                rounding), INT4 codes in [-8, 7] with one fp16 scale per group of 32 columns.
// Dequantised W = q * s_r + Aq Bq. Applied by the exporter to the K tensors with the largest
// quantisation error (sum of squares).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/half.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/export/quantize_rows.hpp"

namespace pgolf {

inline constexpr int kLqerMaxRank = 16;
inline constexpr int kLqerGroup = 32;
inline constexpr int kLqerAMin = -2, kLqerAMax = 1, kLqerBMin = -8, kLqerBMax = 7;

constexpr int lqer_groups(int cols) { return (cols + kLqerGroup - 1) / kLqerGroup; }

// Bytes a rank-r correction takes in the artifact (after the rank byte).
constexpr std::size_t lqer_bytes(int rows, int cols, int rank) {
  if (rank == 0) return 0;
  return 4 + std::size_t(rows) * rank + 2 * std::size_t(rank) * lqer_groups(cols) + std::size_t(rank) * cols;
}

// Adds Aq Bq to W [rows, cols].
template <class T>
void apply_lqer(const LqerFactors& f, int rows, int cols, T* W) {
  if (f.rank == 0) return;
  std::vector<double> b(std::size_t(f.rank) * cols);
  for (int k = 0; k < f.rank; ++k)
    for (int j = 0; j < cols; ++j)
      b[std::size_t(k) * cols + j] =
          double(f.b[std::size_t(k) * cols + j]) *
          half_bits_to_float(f.b_scales[std::size_t(k) * lqer_groups(cols) + std::size_t(j / kLqerGroup)]);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < cols; ++j) {
      double s = 0;
      for (int k = 0; k < f.rank; ++k) s += double(f.a[std::size_t(r) * f.rank + k]) * b[std::size_t(k) * cols + j];
      W[std::size_t(r) * cols + j] = T(double(W[std::size_t(r) * cols + j]) + double(f.a_scale) * s);
    }
}

// The correction of E [rows, cols] (row-major doubles) at the given rank; power iterations from a
// fixed seed, so the export is deterministic.
inline LqerFactors fit_lqer(const std::vector<double>& E, int rows, int cols, int rank, int iterations = 8) {
  PGOLF_CHECK(rank >= 1 && rank <= kLqerMaxRank, "LQER rank must be 1..", kLqerMaxRank, ", got ", rank);
  rank = std::min({rank, rows, cols});
  // Block power iteration on E E^T: Q [rows, rank] orthonormal.
  std::vector<double> Q(std::size_t(rows) * rank), Y(std::size_t(cols) * rank);
  for (std::size_t i = 0; i < Q.size(); ++i) Q[i] = normal01(0x1e9e5, 7, i);
  auto orthonormalise = [&](std::vector<double>& M, int n) {  // columns of M [n, rank], Gram-Schmidt twice
    for (int k = 0; k < rank; ++k)
      for (int pass = 0; pass < 2; ++pass) {
        for (int l = 0; l < k; ++l) {
          double d = 0;
          for (int i = 0; i < n; ++i) d += M[std::size_t(i) * rank + k] * M[std::size_t(i) * rank + l];
          for (int i = 0; i < n; ++i) M[std::size_t(i) * rank + k] -= d * M[std::size_t(i) * rank + l];
        }
        double nrm = 0;
        for (int i = 0; i < n; ++i) nrm += M[std::size_t(i) * rank + k] * M[std::size_t(i) * rank + k];
        nrm = std::sqrt(nrm);
        for (int i = 0; i < n; ++i) M[std::size_t(i) * rank + k] = nrm > 0 ? M[std::size_t(i) * rank + k] / nrm : 0.0;
      }
  };
  orthonormalise(Q, rows);
  for (int it = 0; it < iterations; ++it) {
    std::fill(Y.begin(), Y.end(), 0.0);  // Y = E^T Q
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < cols; ++j) {
        const double e = E[std::size_t(r) * cols + j];
        for (int k = 0; k < rank; ++k) Y[std::size_t(j) * rank + k] += e * Q[std::size_t(r) * rank + k];
      }
    std::fill(Q.begin(), Q.end(), 0.0);  // Q = E Y
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < cols; ++j) {
        const double e = E[std::size_t(r) * cols + j];
        for (int k = 0; k < rank; ++k) Q[std::size_t(r) * rank + k] += e * Y[std::size_t(j) * rank + k];
      }
    orthonormalise(Q, rows);
  }
  LqerFactors f;
  f.rank = rank;
  // A: Q in INT2 with one scale, the one of a small grid with the least squared error.
  double amax = 0;
  for (double v : Q) amax = std::max(amax, std::abs(v));
  auto code = [](double v, double s) { return std::clamp(std::nearbyint(v / s), double(kLqerAMin), double(kLqerAMax)); };
  double best = -1;
  for (int t = 1; t <= 12; ++t) {
    const double s = amax > 0 ? amax * t / 18.0 : 1.0;
    double e = 0;
    for (double v : Q) e += (v - code(v, s) * s) * (v - code(v, s) * s);
    if (best < 0 || e < best) best = e, f.a_scale = float(s);
  }
  f.a.resize(Q.size());
  for (std::size_t i = 0; i < Q.size(); ++i) f.a[i] = std::int8_t(code(Q[i], double(f.a_scale)));
  // B = (Aq^T Aq)^-1 Aq^T E with Aq = a * a_scale: a small [rank, rank] solve (Gauss-Jordan, ridge for
  // a rank-deficient Aq).
  std::vector<double> G(std::size_t(rank) * rank, 0.0), R(std::size_t(rank) * cols, 0.0);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < rank; ++k) {
      const double ak = f.a[std::size_t(r) * rank + k] * double(f.a_scale);
      if (ak == 0) continue;
      for (int l = 0; l < rank; ++l) G[std::size_t(k) * rank + l] += ak * f.a[std::size_t(r) * rank + l] * double(f.a_scale);
      for (int j = 0; j < cols; ++j) R[std::size_t(k) * cols + j] += ak * E[std::size_t(r) * cols + j];
    }
  double tr = 0;
  for (int k = 0; k < rank; ++k) tr += G[std::size_t(k) * rank + k];
  for (int k = 0; k < rank; ++k) G[std::size_t(k) * rank + k] += 1e-9 * (tr > 0 ? tr : 1.0);
  for (int k = 0; k < rank; ++k) {  // Gauss-Jordan on [G | R]; G is SPD so no pivoting is needed
    const double p = G[std::size_t(k) * rank + k];
    for (int l = 0; l < rank; ++l) G[std::size_t(k) * rank + l] /= p;
    for (int j = 0; j < cols; ++j) R[std::size_t(k) * cols + j] /= p;
    for (int m = 0; m < rank; ++m) {
      if (m == k) continue;
      const double c = G[std::size_t(m) * rank + k];
      if (c == 0) continue;
      for (int l = 0; l < rank; ++l) G[std::size_t(m) * rank + l] -= c * G[std::size_t(k) * rank + l];
      for (int j = 0; j < cols; ++j) R[std::size_t(m) * cols + j] -= c * R[std::size_t(k) * cols + j];
    }
  }
  // B in INT4, one fp16 scale per group of 32 columns of each row.
  const int groups = lqer_groups(cols);
  f.b.resize(std::size_t(rank) * cols);
  f.b_scales.resize(std::size_t(rank) * groups);
  for (int k = 0; k < rank; ++k)
    for (int g = 0; g < groups; ++g) {
      const int j0 = g * kLqerGroup, j1 = std::min(cols, j0 + kLqerGroup);
      double m = 0;
      for (int j = j0; j < j1; ++j) m = std::max(m, std::abs(R[std::size_t(k) * cols + j]));
      const std::uint16_t sb = float_to_half_bits(float(m / kLqerBMax));
      f.b_scales[std::size_t(k) * groups + g] = sb;
      const double s = half_bits_to_float(sb);
      for (int j = j0; j < j1; ++j)
        f.b[std::size_t(k) * cols + j] = std::int8_t(
            s > 0 ? std::clamp(std::nearbyint(R[std::size_t(k) * cols + j] / s), double(kLqerBMin),
                               double(kLqerBMax))
                  : 0.0);
    }
  return f;
}

}  // namespace pgolf
