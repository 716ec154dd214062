// Full-Hessian GPTQ (TECHNIQUES.md 5.5) for one matrix W [rows, cols] whose product input x has the
// second moment H = sum x x^T / batches [cols, cols]:
//   1. dead columns (H_jj = 0): H_jj = 1, W[:, j] = 0;  2. H += damp * mean(diag H) * I;
//   3. act-order: columns by descending diag H;  4. U = upper Cholesky factor of H^-1;
//   5. row scales fixed before the sweep: SDClip s_r = fp16(k * std(W_r) / Qmax), or the sweep once per
//      clip percentile p (s_r = fp16(p-quantile of |W_r| / Qmax), no floor) keeping the lowest squared
//      error;
//   6. columns in blocks: q_j = clamp(round(w_j / s), -Qmax, Qmax), e_j = (w_j - q_j s) / U_jj,
//      w[j+1:block end] -= e_j U[j, j+1:]; after a block, later columns -= E U[block, later];
//   7. un-permute. Storage as every row quantiser (quantize_rows.hpp): fp16 row scales, int8 codes.
// The error feedback of a row touches only that row, so rows are swept one at a time (the same
// arithmetic as the records' [rows, block] batches). Dense factorisations are in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/half.hpp"
#include "pgolf/export/quantize_rows.hpp"
#include "pgolf/ops/cpu/blas.hpp"

namespace pgolf {

namespace detail {
// The lower Cholesky factor of the diagonal block A[j0:j0+b, j0:j0+b] (leading dimension n), in place,
// the trailing rows' update from earlier blocks already applied.
inline void cholesky_block(double* A, int n, int j0, int b, const char* what) {
  for (int j = j0; j < j0 + b; ++j) {
    double* aj = A + std::size_t(j) * n;
    double d = aj[j];
    for (int k = j0; k < j; ++k) d -= aj[k] * aj[k];
    PGOLF_CHECK(d > 0 && std::isfinite(d), what, ": the matrix is not positive definite (pivot ", j, " is ", d, ")");
    const double ljj = std::sqrt(d);
    aj[j] = ljj;
    for (int i = j + 1; i < j0 + b; ++i) {
      double* ai = A + std::size_t(i) * n;
      double s = ai[j];
      for (int k = j0; k < j; ++k) s -= ai[k] * aj[k];
      ai[j] = s / ljj;
    }
  }
}

// In place: the lower Cholesky factor L of an SPD matrix A [n, n] (A = L L^T); the upper triangle is
// zeroed. Blocked (right-looking, blocks of 128) so that the O(n^3) work is BLAS's triangular solve
// and symmetric rank-k update: a 2048-column Hessian (the records' MLP down projection) factors in
// a fraction of a second instead of seconds.
inline void cholesky_lower(std::vector<double>& A, int n, const char* what) {
  constexpr int kBlock = 128;
  ops::cpu::detail::blas_single_threaded();
  double* a = A.data();
  for (int j0 = 0; j0 < n; j0 += kBlock) {
    const int b = std::min(kBlock, n - j0), m = n - j0 - b;
    cholesky_block(a, n, j0, b, what);
    if (m == 0) break;
    double* l11 = a + std::size_t(j0) * n + j0;
    double* a21 = a + std::size_t(j0 + b) * n + j0;
    double* a22 = a + std::size_t(j0 + b) * n + j0 + b;
    // L21 = A21 L11^-T, then A22 -= L21 L21^T (lower triangle).
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m, b, 1.0, l11, n, a21, n);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, m, b, -1.0, a21, n, 1.0, a22, n);
  }
  for (int j = 0; j < n; ++j)
    for (int k = j + 1; k < n; ++k) A[std::size_t(j) * n + k] = 0;
}

// H^-1 from the lower Cholesky factor L of H: Y = L^-1 (a triangular solve of L Y = I), then
// H^-1 = Y^T Y (a symmetric rank-n update), both in BLAS.
inline std::vector<double> inverse_from_cholesky(const std::vector<double>& L, int n) {
  ops::cpu::detail::blas_single_threaded();
  std::vector<double> Y(std::size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i) Y[std::size_t(i) * n + i] = 1.0;
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, n, 1.0, L.data(), n, Y.data(), n);
  std::vector<double> inv(std::size_t(n) * n, 0.0);
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, n, n, 1.0, Y.data(), n, 0.0, inv.data(), n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) inv[std::size_t(j) * n + i] = inv[std::size_t(i) * n + j];
  return inv;
}
}  // namespace detail

// tr((W - Wq) H (W - Wq)^T): the product's output error summed over the calibration inputs.
template <class T>
double hessian_weighted_error(const T* W, const RowCodes& c, const std::vector<double>& H) {
  const int n = c.cols;
  std::vector<double> d(static_cast<std::size_t>(n));
  double total = 0;
  for (int r = 0; r < c.rows; ++r) {
    const double s = half_bits_to_float(c.scales[std::size_t(r)]);
    for (int j = 0; j < n; ++j) {
      const std::size_t i = std::size_t(r) * n + j;
      d[std::size_t(j)] = double(W[i]) - double(c.q[i]) * s;
    }
    for (int a = 0; a < n; ++a) {
      double s2 = 0;
      for (int b = 0; b < n; ++b) s2 += H[std::size_t(a) * n + b] * d[std::size_t(b)];
      total += d[std::size_t(a)] * s2;
    }
  }
  return total;
}

struct GptqSettings {
  int bits = 6;
  bool sdclip = true;   // SDClip scales with k; else the percentile sweep
  double k = 12.85;
  double damp = 0.01;
  int block = 128;
};

namespace detail {
// One error-feedback sweep with fixed scales. Wp: W with permuted columns [rows, n]; U: upper
// Cholesky factor of the permuted H^-1; codes land in permuted column order.
inline void gptq_sweep(const std::vector<double>& Wp, int rows, int n, const std::vector<double>& U,
                       const std::vector<std::uint16_t>& scales, int qmax, int block, std::vector<std::int8_t>& qp) {
  std::vector<double> w(static_cast<std::size_t>(n)), err(static_cast<std::size_t>(block));
  for (int r = 0; r < rows; ++r) {
    std::copy_n(Wp.data() + std::size_t(r) * n, n, w.data());
    const double s = half_bits_to_float(scales[std::size_t(r)]);
    for (int i1 = 0; i1 < n; i1 += block) {
      const int i2 = std::min(i1 + block, n);
      for (int j = i1; j < i2; ++j) {
        const double q = s > 0 ? std::clamp(std::nearbyint(w[std::size_t(j)] / s), double(-qmax), double(qmax)) : 0.0;
        qp[std::size_t(r) * n + j] = std::int8_t(q);
        const double e = (w[std::size_t(j)] - q * s) / U[std::size_t(j) * n + j];
        err[std::size_t(j - i1)] = e;
        const double* u = U.data() + std::size_t(j) * n;
        for (int k = j + 1; k < i2; ++k) w[std::size_t(k)] -= e * u[k];
      }
      for (int j = i1; j < i2; ++j) {  // the block's error to every later column
        const double e = err[std::size_t(j - i1)];
        const double* u = U.data() + std::size_t(j) * n;
        for (int k = i2; k < n; ++k) w[std::size_t(k)] -= e * u[k];
      }
    }
  }
}
}  // namespace detail

// GPTQ of W [rows, cols] with H [cols, cols] (row-major, symmetric positive semi-definite).
template <class T>
RowCodes quantize_rows_gptq(const T* W, int rows, int cols, std::vector<double> H, const GptqSettings& g,
                            const std::string& what = "GPTQ") {
  check_quant_bits(g.bits, what);
  PGOLF_CHECK(H.size() == std::size_t(cols) * cols, what, ": Hessian holds ", H.size(), " values, expected ",
              std::size_t(cols) * cols);
  PGOLF_CHECK(g.block >= 1 && g.damp > 0, what, ": block must be >= 1 and damping positive");
  const int n = cols, qmax = quant_qmax(g.bits);
  std::vector<double> Wd(std::size_t(rows) * n);
  for (std::size_t i = 0; i < Wd.size(); ++i) Wd[i] = double(W[i]);
  double mean_diag = 0;
  for (int j = 0; j < n; ++j) {
    PGOLF_CHECK(std::isfinite(H[std::size_t(j) * n + j]), what, ": Hessian diagonal ", j, " is not finite");
    if (H[std::size_t(j) * n + j] == 0) {  // a column no input ever reaches: its weights do not matter
      H[std::size_t(j) * n + j] = 1;
      for (int r = 0; r < rows; ++r) Wd[std::size_t(r) * n + j] = 0;
    }
    mean_diag += H[std::size_t(j) * n + j];
  }
  mean_diag /= n;
  for (int j = 0; j < n; ++j) H[std::size_t(j) * n + j] += g.damp * mean_diag;

  std::vector<int> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int a, int b) { return H[std::size_t(a) * n + a] > H[std::size_t(b) * n + b]; });
  std::vector<double> Hp(std::size_t(n) * n), Wp(Wd.size());
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) Hp[std::size_t(a) * n + b] = H[std::size_t(perm[a]) * n + perm[b]];
  for (int r = 0; r < rows; ++r)
    for (int a = 0; a < n; ++a) Wp[std::size_t(r) * n + a] = Wd[std::size_t(r) * n + perm[a]];

  detail::cholesky_lower(Hp, n, what.c_str());
  std::vector<double> U = detail::inverse_from_cholesky(Hp, n);
  detail::cholesky_lower(U, n, what.c_str());  // H^-1 = L L^T, U = L^T
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) std::swap(U[std::size_t(i) * n + j], U[std::size_t(j) * n + i]);

  auto sweep = [&](std::vector<std::uint16_t> scales) {
    std::vector<std::int8_t> qp(Wd.size());
    detail::gptq_sweep(Wp, rows, n, U, scales, qmax, g.block, qp);
    RowCodes out{rows, cols, g.bits, Quantiser::gptq, std::vector<std::int8_t>(Wd.size()), std::move(scales)};
    for (int r = 0; r < rows; ++r)
      for (int a = 0; a < n; ++a) out.q[std::size_t(r) * n + perm[a]] = qp[std::size_t(r) * n + a];
    return out;
  };
  if (g.sdclip) {
    std::vector<std::uint16_t> scales(static_cast<std::size_t>(rows));
    for (int r = 0; r < rows; ++r) {
      const double* w = Wd.data() + std::size_t(r) * n;
      const double mean = std::accumulate(w, w + n, 0.0) / n;
      double var = 0;
      for (int j = 0; j < n; ++j) var += (w[j] - mean) * (w[j] - mean);
      const double sd = n > 1 ? std::sqrt(var / (n - 1)) : std::abs(w[0]);  // torch.std: unbiased
      scales[std::size_t(r)] = float_to_half_bits(float(g.k * sd / qmax));
    }
    return sweep(std::move(scales));
  }
  RowCodes best;
  double best_err = 0;
  for (double p : kGptqLitePercentiles) {
    RowCodes c = sweep(quantize_rows_percentile(Wd.data(), rows, cols, g.bits, p, 0.0).scales);
    const double e = row_codes_sq_error(Wd.data(), c);
    if (best.q.empty() || e < best_err) best_err = e, best = std::move(c);
  }
  return best;
}

}  // namespace pgolf
