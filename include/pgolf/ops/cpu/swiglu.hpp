// SwiGLU's gating (PRISM's neural expert, PRISM.md 2.5): out = silu(a) * b, silu(a) = a * sigmoid(a),
// with a = W_gate x and b = W_up x computed by the caller's products.
// Backward: da = dout * b * sigmoid(a) * (1 + a * (1 - sigmoid(a))),  db = dout * silu(a).
#pragma once

#include <cmath>
#include <cstddef>

namespace pgolf::ops::cpu {

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <class T>
void swiglu_forward(const T* a, const T* b, std::size_t n, T* out) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) out[i] = a[i] * sigmoid(a[i]) * b[i];
}

// da, db written (they may alias a and b).
template <class T>
void swiglu_backward(const T* dout, const T* a, const T* b, std::size_t n, T* da, T* db) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    const T s = sigmoid(a[i]), ai = a[i], bi = b[i], g = dout[i];
    da[i] = g * bi * s * (T(1) + ai * (T(1) - s));
    db[i] = g * ai * s;
  }
}

}  // namespace pgolf::ops::cpu
