// Cosine similarity and relative L2 error of a GPU result a against a reference b.
#pragma once

#include <cmath>
#include <cstddef>

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
}  // namespace cuda_test
