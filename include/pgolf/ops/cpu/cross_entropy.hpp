// Mean cross-entropy over N rows of logits [N, V]. Per-row losses are kept so evaluation can sum
// them in double (val_bpb); the backward writes (softmax - onehot) * scale.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pgolf/core/error.hpp"

namespace pgolf::ops::cpu {

// Rows with a target (>= 0).
inline std::size_t scored_rows(const std::int32_t* targets, std::size_t N) {
  std::size_t k = 0;
  for (std::size_t n = 0; n < N; ++n) k += targets[n] >= 0 ? 1 : 0;
  return k;
}

// Returns the mean loss over scored rows (accumulated in double); row_loss[n] = logsumexp(logits_n) -
// logits_n[y_n]. A target < 0 marks a row that is not scored (a task's loss mask): its loss is 0.
template <class T>
double cross_entropy_forward(const T* logits, const std::int32_t* targets, std::size_t N, int V, T* row_loss) {
  for (std::size_t n = 0; n < N; ++n)
    PGOLF_CHECK(targets[n] < V, "target id ", targets[n], " at position ", n, " is outside the vocabulary [0, ", V, ")");
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n) {
    if (targets[n] < 0) {
      row_loss[n] = 0;
      continue;
    }
    const T* z = logits + n * V;
    T m = z[0];
    for (int i = 1; i < V; ++i) m = z[i] > m ? z[i] : m;
    T s = 0;
    for (int i = 0; i < V; ++i) s += std::exp(z[i] - m);
    row_loss[n] = m + std::log(s) - z[targets[n]];
  }
  double total = 0;
  for (std::size_t n = 0; n < N; ++n) total += double(row_loss[n]);
  return total / double(std::max<std::size_t>(scored_rows(targets, N), 1));
}

// dlogits = scale * (softmax(logits) - onehot(target)), 0 on unscored rows; dlogits may alias logits.
// For the mean loss, scale = 1 / scored_rows.
template <class T>
void cross_entropy_backward(const T* logits, const std::int32_t* targets, std::size_t N, int V, T scale,
                            T* dlogits) {
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n) {
    const T* z = logits + n * V;
    T* dz = dlogits + n * V;
    if (targets[n] < 0) {
      for (int i = 0; i < V; ++i) dz[i] = T(0);
      continue;
    }
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
