// The baseline's int8 quantisation (quantize_float_tensor of the reference):
// - matrices, per row r: c_r = 99.99984th percentile of |W_r| (linear interpolation, as
//   torch.quantile); W clipped to [-c_r, c_r]; scale_r = max(c_r / 127, 1/127), stored fp16;
//   q = clamp(round_half_even(W / scale_r), -127, 127). Dequantised W = q * fp16(scale_r).
// - other tensors: one fp32 scale, c / 127 (1 when c == 0), same clip and rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/half.hpp"

namespace pgolf {

inline constexpr double kInt8ClipQuantile = 99.99984 / 100.0;

// torch.quantile(values, q) with linear interpolation; reorders values (two selections, no sort).
inline float quantile_linear(std::vector<float>& values, double q) {
  PGOLF_CHECK(!values.empty(), "quantile of an empty tensor");
  const double pos = q * double(values.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos));
  std::nth_element(values.begin(), values.begin() + lo, values.end());
  const float v_lo = values[lo];
  const float v_hi = lo + 1 < values.size() ? *std::min_element(values.begin() + lo + 1, values.end()) : v_lo;
  return v_lo + float(pos - double(lo)) * (v_hi - v_lo);
}

namespace detail {
// Clip |x| to the 99.99984th percentile of |x|; returns the clip (0 for an empty span).
template <class T>
float int8_clip(const T* x, std::size_t n, std::vector<float>& scratch) {
  scratch.resize(n);
  for (std::size_t i = 0; i < n; ++i) scratch[i] = std::abs(float(x[i]));
  return n > 0 ? quantile_linear(scratch, kInt8ClipQuantile) : 0.0f;
}
// q = clamp(round_half_even(clamp(x, -clip, clip) / scale), -127, 127), as torch.round does.
template <class T>
void int8_codes(const T* x, std::size_t n, float clip, float scale, std::int8_t* q) {
  for (std::size_t i = 0; i < n; ++i) {
    const float c = std::min(std::max(float(x[i]), -clip), clip);
    q[i] = std::int8_t(std::min(std::max(std::nearbyint(c / scale), -127.0f), 127.0f));
  }
}
}  // namespace detail

struct Int8Rows {
  int rows = 0, cols = 0;
  std::vector<std::int8_t> q;         // [rows, cols]
  std::vector<std::uint16_t> scales;  // fp16 bits, one per row
};

template <class T>
Int8Rows quantize_int8_rows(const T* W, int rows, int cols) {
  Int8Rows out{rows, cols, std::vector<std::int8_t>(std::size_t(rows) * cols), std::vector<std::uint16_t>(rows)};
  std::vector<float> scratch;
  for (int r = 0; r < rows; ++r) {
    const T* w = W + std::size_t(r) * cols;
    const float clip = detail::int8_clip(w, std::size_t(cols), scratch);
    const float scale = std::max(clip / 127.0f, 1.0f / 127.0f);
    detail::int8_codes(w, std::size_t(cols), clip, scale, out.q.data() + std::size_t(r) * cols);
    out.scales[r] = float_to_half_bits(scale);
  }
  return out;
}

template <class T>
void dequantize_int8_rows(const Int8Rows& in, T* W) {
  for (int r = 0; r < in.rows; ++r) {
    const float s = half_bits_to_float(in.scales[r]);
    for (int j = 0; j < in.cols; ++j) W[std::size_t(r) * in.cols + j] = T(float(in.q[std::size_t(r) * in.cols + j]) * s);
  }
}

struct Int8Tensor {
  std::vector<std::int8_t> q;
  float scale = 1.0f;
};

template <class T>
Int8Tensor quantize_int8_tensor(const T* x, std::size_t n) {
  std::vector<float> scratch;
  const float clip = detail::int8_clip(x, n, scratch);
  Int8Tensor out{std::vector<std::int8_t>(n), clip > 0 ? clip / 127.0f : 1.0f};
  detail::int8_codes(x, n, clip, out.scale, out.q.data());
  return out;
}

template <class T>
void dequantize_int8_tensor(const Int8Tensor& in, T* x) {
  for (std::size_t i = 0; i < in.q.size(); ++i) x[i] = T(float(in.q[i]) * in.scale);
}

}  // namespace pgolf
