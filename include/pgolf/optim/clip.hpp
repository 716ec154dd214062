// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_: when the L2 norm of all
// gradients exceeds max_norm, scale them by max_norm / (norm + 1e-6). Returns the norm before
// clipping (accumulated in double, so it also detects NaN/inf gradients).
#pragma once

#include <cmath>
#include <span>

namespace pgolf {

template <class T>
double clip_grad_norm(std::span<T> grads, double max_norm) {
  double ss = 0;
  for (const T g : grads) ss += double(g) * double(g);
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
      for (T& g : grads) g = T(double(g) * coef);
  }
  return norm;
}

}  // namespace pgolf
