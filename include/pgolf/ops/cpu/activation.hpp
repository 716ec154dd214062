// MLP activations: relu^2 (baseline) and LeakyReLU(0.5)^2, forward and backward, chosen at compile
// time by the spec.
#pragma once

#include <cstddef>

#include "pgolf/ops/activation_kind.hpp"

namespace pgolf::ops::cpu {

template <Activation A, class T>
constexpr T activate(T u) {
  if constexpr (A == Activation::relu2) {
    return u > T(0) ? u * u : T(0);
  } else {
    const T r = u > T(0) ? u : T(0.5) * u;
    return r * r;
  }
}

template <Activation A, class T>
constexpr T activate_grad(T u) {
  if constexpr (A == Activation::relu2) {
    return u > T(0) ? T(2) * u : T(0);
  } else {
    return u > T(0) ? T(2) * u : T(0.5) * u;
  }
}

template <Activation A, class T>
void activation_forward(const T* u, std::size_t n, T* out) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) out[i] = activate<A>(u[i]);
}

// du = f'(u) * dout (overwritten).
template <Activation A, class T>
void activation_backward(const T* dout, const T* u, std::size_t n, T* du) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) du[i] = activate_grad<A>(u[i]) * dout[i];
}

}  // namespace pgolf::ops::cpu
