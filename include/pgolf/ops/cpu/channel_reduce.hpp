// Per-channel reductions over tokens, sum_n a[n,c] * b[n,c], shared by every op with a
// per-channel parameter. Threads own disjoint channel ranges and add tokens in order, so the
// result does not depend on the thread count.
#pragma once

#include <cstddef>

namespace pgolf::ops::cpu {

// out[c] += sum_n a[n, c] * b[n, c]
template <class T>
void channel_dot_accumulate(const T* a, const T* b, std::size_t N, int dim, T* out) {
  constexpr int kChunk = 32;
  const int chunks = (dim + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < chunks; ++ch) {
    const int c0 = ch * kChunk, c1 = c0 + kChunk < dim ? c0 + kChunk : dim;
    T acc[kChunk] = {};
    for (std::size_t n = 0; n < N; ++n) {
      const T* an = a + n * dim;
      const T* bn = b + n * dim;
      for (int c = c0; c < c1; ++c) acc[c - c0] += an[c] * bn[c];
    }
    for (int c = c0; c < c1; ++c) out[c] += acc[c - c0];
  }
}

}  // namespace pgolf::ops::cpu
