// What a PRISM expert sees and the small pieces its kinds share. Every expert maps the block's
// normed stream hx [N, D] (N = batch * seq tokens) to an output [N, D]; the memory expert also reads
// and writes the tape. Experts are plain class templates with the same members (kind, forward,
// backward), listed per block as a Boost.Hana tuple (block.hpp), so a block's loop over its experts
// unrolls at compile time.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pgolf/model/prism_spec.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf::prism {

template <class T>
struct ExpertIo {
  int batch = 0, seq = 0;
  const T* hx = nullptr;       // [N, D]
  const T* tape_in = nullptr;  // reference: [B, S, M]; causal: [N, S, M] (the tape position t sees)
  std::size_t tokens() const { return std::size_t(batch) * std::size_t(seq); }
};

// Row-wise softmax in place over `width` entries.
template <class T>
void softmax_row(T* x, int width) {
  T m = x[0];
  for (int i = 1; i < width; ++i) m = std::max(m, x[i]);
  T z = 0;
  for (int i = 0; i < width; ++i) z += (x[i] = std::exp(x[i] - m));
  for (int i = 0; i < width; ++i) x[i] /= z;
}
// dl = p * (dp - <p, dp>), written over dp.
template <class T>
void softmax_row_backward(const T* p, T* dp, int width) {
  T dot = 0;
  for (int i = 0; i < width; ++i) dot += p[i] * dp[i];
  for (int i = 0; i < width; ++i) dp[i] = p[i] * (dp[i] - dot);
}
// -sum p log(p + 1e-8), the reference's entropy.
template <class T>
T entropy_row(const T* p, int width) {
  T h = 0;
  for (int i = 0; i < width; ++i) h -= p[i] * std::log(p[i] + T(1e-8));
  return h;
}

}  // namespace pgolf::prism
