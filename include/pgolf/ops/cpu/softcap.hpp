// Logit softcap: y = cap * tanh(z / cap). The backward reads the capped output only
// (1 - tanh^2 = 1 - (y / cap)^2), so z need not be kept.
#pragma once

#include <cmath>
#include <cstddef>

namespace pgolf::ops::cpu {

template <class T>
void softcap_forward(const T* z, std::size_t n, T cap, T* y) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) y[i] = cap * std::tanh(z[i] / cap);
}

// dz = dy * (1 - (y / cap)^2); dz may alias dy.
template <class T>
void softcap_backward(const T* dy, const T* y, std::size_t n, T cap, T* dz) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    const T t = y[i] / cap;
    dz[i] = dy[i] * (T(1) - t * t);
  }
}

}  // namespace pgolf::ops::cpu
