// RMSNorm without a learned weight over rows of `width` elements: per token (width = dim) or per
// head (width = head_dim, the QK norm). y = x / sqrt(mean(x^2) + eps); rstd is saved per row.
#pragma once

#include <cmath>
#include <cstddef>

namespace pgolf::ops::cpu {

template <class T>
void rmsnorm_forward(const T* x, std::size_t rows, int width, T eps, T* y, T* rstd) {
#pragma omp parallel for schedule(static)
  for (std::size_t r = 0; r < rows; ++r) {
    const T* xr = x + r * width;
    T ss = 0;
    for (int i = 0; i < width; ++i) ss += xr[i] * xr[i];
    const T s = T(1) / std::sqrt(ss / T(width) + eps);
    rstd[r] = s;
    T* yr = y + r * width;
    for (int i = 0; i < width; ++i) yr[i] = xr[i] * s;
  }
}

// dx = rstd * (dy - y * mean(dy * y)); added into dx when accumulate.
template <class T>
void rmsnorm_backward(const T* dy, const T* y, const T* rstd, std::size_t rows, int width, T* dx, bool accumulate) {
#pragma omp parallel for schedule(static)
  for (std::size_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * width;
    const T* yr = y + r * width;
    T dot = 0;
    for (int i = 0; i < width; ++i) dot += dyr[i] * yr[i];
    const T m = dot / T(width), s = rstd[r];
    T* dxr = dx + r * width;
    for (int i = 0; i < width; ++i) {
      const T g = s * (dyr[i] - yr[i] * m);
      dxr[i] = accumulate ? dxr[i] + g : g;
    }
  }
}

// RMSNorm with a learned per-channel weight w (PRISM's): out = w * y, y the weightless norm (saved).
template <class T>
void rmsnorm_weighted_forward(const T* x, const T* w, std::size_t rows, int width, T eps, T* y, T* rstd, T* out) {
  rmsnorm_forward(x, rows, width, eps, y, rstd);
  for (std::size_t r = 0; r < rows; ++r)
    for (int i = 0; i < width; ++i) out[r * width + i] = w[i] * y[r * width + i];
}
// dw += sum_r dout * y; dx (added when accumulate) through the weightless norm. scratch: rows*width.
template <class T>
void rmsnorm_weighted_backward(const T* dout, const T* w, const T* y, const T* rstd, std::size_t rows, int width,
                               T* dw, T* dx, bool accumulate, T* scratch) {
  for (std::size_t r = 0; r < rows; ++r)
    for (int i = 0; i < width; ++i) {
      dw[i] += dout[r * width + i] * y[r * width + i];
      scratch[r * width + i] = dout[r * width + i] * w[i];
    }
  rmsnorm_backward(scratch, y, rstd, rows, width, dx, accumulate);
}

}  // namespace pgolf::ops::cpu
