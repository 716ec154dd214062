// Cosine similarity and relative L2 error of a GPU result a against a reference b, and the bound a
// bf16 result is held to.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string_view>

namespace cuda_test {
struct Compare {
  double cosine, rel_l2;
};
template <class A, class B>
Compare compare(const A* a, const B* b, std::size_t n) {
  double ab = 0, aa = 0, bb = 0, dd = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double x = double(a[i]), y = double(b[i]);
    ab += x * y, aa += x * x, bb += y * y, dd += (x - y) * (x - y);
  }
  return {ab / std::sqrt(aa * bb + 1e-300), std::sqrt(dd / (bb + 1e-300))};
}

// How close a gradient computed with bf16 products must come to the float64 reference's: within a
// floor (cosine above 1 - cos_gap, relative L2 under rel_l2), or within k times how far the
// reference itself moves when only its weights are rounded to bf16 (`sens`, the reference against
// itself on rounded weights), whichever is looser. Deep models on random weights amplify rounding
// toward the first layers (the records' stack moves by 5-20% there on rounded weights alone), which
// a fixed floor cannot tell from a bug; the backend adds its activations' rounding to the weights',
// hence k = 3. Tensors of fewer than 64 elements (scalars, per-layer gains) are each one sum over
// the whole batch whose terms cancel, where activation rounding dominates: k = 6.
struct Bound {
  double cosine, rel_l2;
};
// The fixed floors of a gradient tensor, by its name. q_gain's gradient is a covariance over each
// softmax row (every row of the score gradient sums to zero), which amplifies the ~1% bf16 error of
// every upstream gradient: cosine above 0.95, relative L2 under 0.4 (test_attention_cuda checks the
// kernel's gain gradient to 2e-3 on shared inputs). Every other tensor: 0.999 and 5e-2.
inline Bound floors(std::string_view name) {
  return name.ends_with("q_gain") ? Bound{0.95, 0.4} : Bound{0.999, 5e-2};
}
inline Bound bf16_bound(std::string_view name, const Compare& sens, std::size_t numel) {
  const Bound f = floors(name);
  const double k = numel < 64 ? 6.0 : 3.0;
  return {std::min(f.cosine, 1.0 - k * k * (1.0 - sens.cosine)), std::max(f.rel_l2, k * sens.rel_l2)};
}
}  // namespace cuda_test
