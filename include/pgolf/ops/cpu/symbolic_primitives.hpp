// PRISM's six symbolic primitives (PRISM.md 2.4), per token, in the reference's fixed order:
//   0 compare(x)         = cos(x[:D/2], x[D/2:]) broadcast to D (x zero-padded by one if D is odd;
//                          norms clamped below at 1e-8 as torch's cosine_similarity)
//   1 gate(x, a1, a2)    = sigmoid(a1) * x + (1 - sigmoid(a1)) * a2
//   2 select(x, a1)      = sum_i softmax(a1)_i x_i broadcast to D
//   3 shift(x)           = x rotated right by one feature (y_0 = x_{D-1})
//   4 threshold(x, a1)   = x * sigmoid(5 (x - a1))
//   5 count(x)           = mean_i sigmoid(x_i) broadcast to D
// The library's selection and output projection are the caller's; this header computes all six
// outputs of a row and, given their gradients, the gradients of x, a1 and a2. Where a norm is below
// the clamp, the reference's autograd differentiates as if the clamped value were the norm; here the
// backward is the exact derivative of the forward (the two agree everywhere above 1e-8).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "pgolf/ops/cpu/swiglu.hpp"  // sigmoid

namespace pgolf::ops::cpu {

inline constexpr int kSymbolicPrimitives = 6;
inline constexpr double kCosineEps = 1e-8;
inline constexpr double kThresholdSlope = 5.0;

namespace detail {
// The halves of the (zero-padded) row for compare: u_i = x_i, v_i = x_{h+i} (0 past the end).
template <class T>
T compare_half(const T* x, int D, int i, bool second) {
  const int h = (D + 1) / 2, j = second ? h + i : i;
  return j < D ? x[j] : T(0);
}
}  // namespace detail

// x, a1, a2: one row of D. y: [6, D], primitive-major.
template <class T>
void symbolic_primitives_forward(const T* x, const T* a1, const T* a2, int D, T* y) {
  const int h = (D + 1) / 2;
  T uv = 0, uu = 0, vv = 0;
  for (int i = 0; i < h; ++i) {
    const T u = detail::compare_half(x, D, i, false), v = detail::compare_half(x, D, i, true);
    uv += u * v, uu += u * u, vv += v * v;
  }
  const T cmp = uv / (std::max(std::sqrt(uu), T(kCosineEps)) * std::max(std::sqrt(vv), T(kCosineEps)));
  T amax = a1[0];
  for (int i = 1; i < D; ++i) amax = std::max(amax, a1[i]);
  T z = 0, sel = 0, cnt = 0;
  for (int i = 0; i < D; ++i) z += std::exp(a1[i] - amax);
  for (int i = 0; i < D; ++i) sel += std::exp(a1[i] - amax) / z * x[i];
  for (int i = 0; i < D; ++i) cnt += sigmoid(x[i]);
  cnt /= T(D);
  for (int i = 0; i < D; ++i) {
    const T s1 = sigmoid(a1[i]);
    y[0 * D + i] = cmp;
    y[1 * D + i] = s1 * x[i] + (T(1) - s1) * a2[i];
    y[2 * D + i] = sel;
    y[3 * D + i] = x[(i + D - 1) % D];
    y[4 * D + i] = x[i] * sigmoid(T(kThresholdSlope) * (x[i] - a1[i]));
    y[5 * D + i] = cnt;
  }
}

// dy: [6, D]. dx, da1, da2 written.
template <class T>
void symbolic_primitives_backward(const T* dy, const T* x, const T* a1, const T* a2, int D, T* dx, T* da1, T* da2) {
  std::fill(dx, dx + D, T(0));
  std::fill(da1, da1 + D, T(0));
  // Broadcast outputs: their scalar's gradient is the sum over the row.
  T g_cmp = 0, g_sel = 0, g_cnt = 0;
  for (int i = 0; i < D; ++i) g_cmp += dy[0 * D + i], g_sel += dy[2 * D + i], g_cnt += dy[5 * D + i];

  // compare: c = uv / (nu nv) with nu = max(|u|, eps); a clamped norm is a constant.
  const int h = (D + 1) / 2;
  T uv = 0, uu = 0, vv = 0;
  for (int i = 0; i < h; ++i) {
    const T u = detail::compare_half(x, D, i, false), v = detail::compare_half(x, D, i, true);
    uv += u * v, uu += u * u, vv += v * v;
  }
  const T ru = std::sqrt(uu), rv = std::sqrt(vv), eps = T(kCosineEps);
  const T nu = std::max(ru, eps), nv = std::max(rv, eps);
  const bool free_u = ru > eps, free_v = rv > eps;
  for (int i = 0; i < h; ++i) {
    const T u = detail::compare_half(x, D, i, false), v = detail::compare_half(x, D, i, true);
    dx[i] += g_cmp * (v / (nu * nv) - (free_u ? uv * u / (nu * nu * nu * nv) : T(0)));
    if (h + i < D) dx[h + i] += g_cmp * (u / (nu * nv) - (free_v ? uv * v / (nu * nv * nv * nv) : T(0)));
  }

  T amax = a1[0];
  for (int i = 1; i < D; ++i) amax = std::max(amax, a1[i]);
  T z = 0, sel = 0;
  for (int i = 0; i < D; ++i) z += std::exp(a1[i] - amax);
  for (int i = 0; i < D; ++i) sel += std::exp(a1[i] - amax) / z * x[i];
  for (int i = 0; i < D; ++i) {
    const T s1 = sigmoid(a1[i]);
    // gate
    dx[i] += dy[1 * D + i] * s1;
    da1[i] += dy[1 * D + i] * (x[i] - a2[i]) * s1 * (T(1) - s1);
    da2[i] = dy[1 * D + i] * (T(1) - s1);
    // select: d sel / d x_i = p_i, d sel / d a1_i = p_i (x_i - sel)
    const T p = std::exp(a1[i] - amax) / z;
    dx[i] += g_sel * p;
    da1[i] += g_sel * p * (x[i] - sel);
    // shift: y_{i+1} = x_i
    dx[i] += dy[3 * D + (i + 1) % D];
    // threshold
    const T st = sigmoid(T(kThresholdSlope) * (x[i] - a1[i]));
    const T dst = T(kThresholdSlope) * st * (T(1) - st);
    dx[i] += dy[4 * D + i] * (st + x[i] * dst);
    da1[i] -= dy[4 * D + i] * x[i] * dst;
    // count
    const T sx = sigmoid(x[i]);
    dx[i] += g_cnt * sx * (T(1) - sx) / T(D);
  }
}

}  // namespace pgolf::ops::cpu
