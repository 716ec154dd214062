// Per-row quantisers of the records for 2-D matrices (TECHNIQUES.md 5.1-5.3). Every one stores one
// fp16 scale per row and one code per int8 byte whatever the bit width: the records do the same and
// the artifact's entropy coder absorbs the unused high bits (compressed size tracks the entropy of the
// codes, not the nominal width), so no bit packing. Dequantised W = q * fp16(s_r) for all of them, so
// the decoder needs only the codes and the scales; the quantiser id is recorded so an artifact says
// how it was made.
//   int8_clip: the baseline (int8.hpp, kept bit-identical): 99.99984th percentile clip, [-127, 127].
//   rowmax:    5.2: s_r = fp16(max|W_r| / Qmax), q = clamp(round(W / s), -(Qmax + 1), Qmax) with
//              Qmax = 2^(bits-1) - 1 (the records' asymmetric range: int6 [-32, 31], int5 [-16, 15]).
//              No scale floor, as 5.2 defines it (the records' quantize_int6_per_row also clamps s_r
//              to at least 1/31, which binds for every row whose max is below 1).
//   gptq_lite: 5.3: one clip percentile p per matrix from {0.999, 0.9995, 0.9999, 0.99999, 1.0},
//              c_r = p-quantile of |W_r|, s_r = fp16(max(c_r / Qmax, 1 / Qmax)),
//              q = clamp(round(W / s), -Qmax, Qmax); p minimises the matrix's mean squared error.
//   gptq:      5.5 (export/gptq.hpp): Hessian-aware error feedback, same storage.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/half.hpp"
#include "pgolf/export/int8.hpp"

namespace pgolf {

enum class Quantiser : std::uint8_t { int8_clip = 0, rowmax = 1, gptq_lite = 2, gptq = 3 };
inline constexpr Quantiser kAllQuantisers[] = {Quantiser::int8_clip, Quantiser::rowmax, Quantiser::gptq_lite,
                                               Quantiser::gptq};

constexpr std::string_view to_string(Quantiser q) {
  switch (q) {
    case Quantiser::int8_clip: return "int8-clip";
    case Quantiser::rowmax: return "rowmax";
    case Quantiser::gptq_lite: return "gptq-lite";
    case Quantiser::gptq: return "gptq";
  }
  return "?";
}

inline bool known_quantiser(std::uint8_t id) {
  for (Quantiser q : kAllQuantisers)
    if (std::uint8_t(q) == id) return true;
  return false;
}

inline constexpr int kMinQuantBits = 2, kMaxQuantBits = 8;
constexpr int quant_qmax(int bits) { return (1 << (bits - 1)) - 1; }

// An optional low-rank correction of a matrix's quantisation error (export/lqer.hpp): W += Aq Bq.
struct LqerFactors {
  int rank = 0;                         // 0: none
  float a_scale = 0;                    // A's one scale
  std::vector<std::int8_t> a;           // [rows, rank], INT2 codes
  std::vector<std::uint16_t> b_scales;  // fp16, [rank, ceil(cols / 32)]
  std::vector<std::int8_t> b;           // [rank, cols], INT4 codes
};

// Codes [rows, cols] (one per byte) and fp16 row scales: the storage every row quantiser shares.
struct RowCodes {
  int rows = 0, cols = 0, bits = 8;
  Quantiser quantiser = Quantiser::int8_clip;
  std::vector<std::int8_t> q;
  std::vector<std::uint16_t> scales;
  LqerFactors lqer{};
};

inline void check_quant_bits(int bits, std::string_view what) {
  PGOLF_CHECK(bits >= kMinQuantBits && bits <= kMaxQuantBits, what, ": quantisation bits must be ", kMinQuantBits,
              "..", kMaxQuantBits, ", got ", bits);
}

template <class T>
void dequantize_rows(const RowCodes& in, T* W) {
  for (int r = 0; r < in.rows; ++r) {
    const float s = half_bits_to_float(in.scales[std::size_t(r)]);
    const std::size_t o = std::size_t(r) * std::size_t(in.cols);
    for (int j = 0; j < in.cols; ++j) W[o + std::size_t(j)] = T(float(in.q[o + std::size_t(j)]) * s);
  }
}

// Sum of squared reconstruction errors of W (double, for comparing quantisers).
template <class T>
double row_codes_sq_error(const T* W, const RowCodes& c) {
  double e = 0;
  for (int r = 0; r < c.rows; ++r) {
    const double s = half_bits_to_float(c.scales[std::size_t(r)]);
    for (int j = 0; j < c.cols; ++j) {
      const std::size_t i = std::size_t(r) * std::size_t(c.cols) + std::size_t(j);
      const double d = double(W[i]) - double(c.q[i]) * s;
      e += d * d;
    }
  }
  return e;
}

// The baseline's int8 rows in the shared storage (bit-identical to quantize_int8_rows).
template <class T>
RowCodes quantize_rows_int8_clip(const T* W, int rows, int cols) {
  Int8Rows q = quantize_int8_rows(W, rows, cols);
  return RowCodes{rows, cols, 8, Quantiser::int8_clip, std::move(q.q), std::move(q.scales)};
}

namespace detail {
// q = clamp(round_half_even(x / s), lo, hi) of one row with the fp16-rounded scale (what the decoder uses).
template <class T>
void row_codes(const T* w, int cols, float s, int lo, int hi, std::int8_t* q) {
  for (int j = 0; j < cols; ++j) {
    const float v = s > 0 ? std::nearbyint(float(w[j]) / s) : 0.0f;
    q[j] = std::int8_t(std::min(std::max(v, float(lo)), float(hi)));
  }
}
}  // namespace detail

// 5.2: row-max scale, the records' asymmetric range [-(Qmax + 1), Qmax].
template <class T>
RowCodes quantize_rows_rowmax(const T* W, int rows, int cols, int bits) {
  check_quant_bits(bits, "rowmax quantiser");
  const int qmax = quant_qmax(bits);
  RowCodes out{rows, cols, bits, Quantiser::rowmax, std::vector<std::int8_t>(std::size_t(rows) * std::size_t(cols)),
               std::vector<std::uint16_t>(std::size_t(rows))};
  for (int r = 0; r < rows; ++r) {
    const T* w = W + std::size_t(r) * std::size_t(cols);
    float amax = 0;
    for (int j = 0; j < cols; ++j) amax = std::max(amax, std::abs(float(w[j])));
    out.scales[std::size_t(r)] = float_to_half_bits(amax / float(qmax));
    detail::row_codes(w, cols, half_bits_to_float(out.scales[std::size_t(r)]), -(qmax + 1), qmax,
                      out.q.data() + std::size_t(r) * std::size_t(cols));
  }
  return out;
}

inline constexpr double kGptqLitePercentiles[] = {0.999, 0.9995, 0.9999, 0.99999, 1.0};

// Per-row symmetric codes with the clip at the p-quantile of |W_r| (p = 1: the row max):
// s_r = fp16(max(c_r / Qmax, floor)), q in [-Qmax, Qmax]. GPTQ-lite's floor is the records' 1 / Qmax
// (it binds for rows whose clip is below 1); GPTQ's percentile sweep (5.5) has none.
template <class T>
RowCodes quantize_rows_percentile(const T* W, int rows, int cols, int bits, double p, double floor) {
  check_quant_bits(bits, "percentile quantiser");
  const int qmax = quant_qmax(bits);
  RowCodes out{rows, cols, bits, Quantiser::gptq_lite, std::vector<std::int8_t>(std::size_t(rows) * std::size_t(cols)),
               std::vector<std::uint16_t>(std::size_t(rows))};
  std::vector<float> scratch;
  for (int r = 0; r < rows; ++r) {
    const T* w = W + std::size_t(r) * std::size_t(cols);
    scratch.resize(std::size_t(cols));
    for (int j = 0; j < cols; ++j) scratch[std::size_t(j)] = std::abs(float(w[j]));
    const float c = p >= 1.0 ? *std::max_element(scratch.begin(), scratch.end()) : quantile_linear(scratch, p);
    out.scales[std::size_t(r)] = float_to_half_bits(std::max(c / float(qmax), float(floor)));
    detail::row_codes(w, cols, half_bits_to_float(out.scales[std::size_t(r)]), -qmax, qmax,
                      out.q.data() + std::size_t(r) * std::size_t(cols));
  }
  return out;
}

// 5.3: the percentile with the smallest mean squared error over the whole matrix (ties: the first).
template <class T>
RowCodes quantize_rows_gptq_lite(const T* W, int rows, int cols, int bits, double* chosen_p = nullptr) {
  RowCodes best;
  double best_err = std::numeric_limits<double>::infinity();
  for (double p : kGptqLitePercentiles) {
    RowCodes c = quantize_rows_percentile(W, rows, cols, bits, p, 1.0 / quant_qmax(bits));
    const double e = row_codes_sq_error(W, c);
    if (e < best_err) {
      best_err = e;
      best = std::move(c);
      if (chosen_p) *chosen_p = p;
    }
  }
  return best;
}

}  // namespace pgolf
