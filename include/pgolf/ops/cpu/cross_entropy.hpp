// Mean cross-entropy over N rows of logits [N, V]. Per-row losses are kept so evaluation can sum
// them in double (val_bpb); the backward writes (softmax - onehot) * scale.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pgolf/core/error.hpp"

namespace pgolf::ops::cpu {

// Returns the mean loss (accumulated in double); row_loss[n] = logsumexp(logits_n) - logits_n[y_n].
template <class T>
double cross_entropy_forward(const T* logits, const std::int32_t* targets, std::size_t N, int V, T* row_loss) {
  for (std::size_t n = 0; n < N; ++n)
    PGOLF_CHECK(targets[n] >= 0 && targets[n] < V, "target id ", targets[n], " at position ", n,
                " is outside the vocabulary [0, ", V, ")");
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n) {
    const T* z = logits + n * V;
    T m = z[0];
    for (int i = 1; i < V; ++i) m = z[i] > m ? z[i] : m;
    T s = 0;
    for (int i = 0; i < V; ++i) s += std::exp(z[i] - m);
    row_loss[n] = m + std::log(s) - z[targets[n]];
  }
  double total = 0;
  for (std::size_t n = 0; n < N; ++n) total += double(row_loss[n]);
  return total / double(N);
}

// dlogits = scale * (softmax(logits) - onehot(target)); dlogits may alias logits. For the mean loss,
// scale = 1 / N.
template <class T>
void cross_entropy_backward(const T* logits, const std::int32_t* targets, std::size_t N, int V, T scale,
                            T* dlogits) {
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n) {
    const T* z = logits + n * V;
    T* dz = dlogits + n * V;
    T m = z[0];
    for (int i = 1; i < V; ++i) m = z[i] > m ? z[i] : m;
    T s = 0;
    for (int i = 0; i < V; ++i) s += std::exp(z[i] - m);
    const T inv = T(1) / s;
    const int y = targets[n];
    for (int i = 0; i < V; ++i) dz[i] = scale * (std::exp(z[i] - m) * inv - (i == y ? T(1) : T(0)));
  }
}

}  // namespace pgolf::ops::cpu
