// Linear without bias, PyTorch convention: y[N, out] = x[N, in] W^T with W stored [out, in].
#pragma once

#include <cstddef>

#include "pgolf/ops/cpu/blas.hpp"

namespace pgolf::ops::cpu {

// Calibration hook (GPTQ's Hessians, export/calibration.hpp): while an observer is installed, every
// product reports its weight and input. Off by default; then the cost is one pointer test per product.
// A weight-shared block reports once per virtual use, so its statistics aggregate over the uses.
struct ProductInputObserver {
  virtual ~ProductInputObserver() = default;
  virtual void observe(const float* W, const float* x, int N, int in) = 0;
  virtual void observe(const double* W, const double* x, int N, int in) = 0;
};
inline ProductInputObserver*& product_input_observer() {
  static ProductInputObserver* observer = nullptr;
  return observer;
}

template <class T>
void linear_forward(const T* x, const T* W, T* y, int N, int in, int out) {
  if (ProductInputObserver* o = product_input_observer()) o->observe(W, x, N, in);
  gemm<T>(false, true, N, out, in, T(1), x, in, W, in, T(0), y, out);
}

// dx = dy W (overwritten, or added when accumulate_dx: several projections read the same input);
// dW += dy^T x (always accumulated: a shared weight's gradient is the sum over its uses).
template <class T>
void linear_backward(const T* dy, const T* x, const T* W, T* dx, T* dW, int N, int in, int out,
                     bool accumulate_dx) {
  if (dx != nullptr) gemm<T>(false, false, N, in, out, T(1), dy, out, W, in, accumulate_dx ? T(1) : T(0), dx, in);
  if (dW != nullptr) gemm<T>(true, false, out, in, N, T(1), dy, out, x, in, T(1), dW, in);
}

// Bias of an affine layer: y[n, :] += b;  db += sum_n dy[n, :] (in token order, deterministic).
template <class T>
void bias_forward(T* y, const T* b, int N, int out) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < out; ++o) y[std::size_t(n) * out + o] += b[o];
}
template <class T>
void bias_backward(const T* dy, int N, int out, T* db) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < out; ++o) db[o] += dy[std::size_t(n) * out + o];
}

}  // namespace pgolf::ops::cpu
