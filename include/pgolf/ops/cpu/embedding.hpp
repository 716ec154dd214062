// Token embedding: a row gather, and its backward as a scatter-add into the table.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pgolf/core/error.hpp"

namespace pgolf::ops::cpu {

template <class T>
void embedding_forward(const std::int32_t* ids, std::size_t N, const T* table, int vocab, int dim, T* out) {
  for (std::size_t n = 0; n < N; ++n)
    PGOLF_CHECK(ids[n] >= 0 && ids[n] < vocab, "token id ", ids[n], " at position ", n,
                " is outside the vocabulary [0, ", vocab, ")");
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n) {
    const T* row = table + std::size_t(ids[n]) * dim;
    T* o = out + n * dim;
    for (int c = 0; c < dim; ++c) o[c] = row[c];
  }
}

// dtable[ids[n]] += dout[n]. Threads own disjoint column ranges and walk tokens in order, so the
// sum is deterministic and race-free.
template <class T>
void embedding_backward(const std::int32_t* ids, std::size_t N, const T* dout, int dim, T* dtable) {
  constexpr int kChunk = 32;
  const int chunks = (dim + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < chunks; ++ch) {
    const int c0 = ch * kChunk, c1 = c0 + kChunk < dim ? c0 + kChunk : dim;
    for (std::size_t n = 0; n < N; ++n) {
      T* row = dtable + std::size_t(ids[n]) * dim;
      const T* g = dout + n * dim;
      for (int c = c0; c < c1; ++c) row[c] += g[c];
    }
  }
}

}  // namespace pgolf::ops::cpu
