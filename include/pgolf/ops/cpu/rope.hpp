// Rotary position embedding, half-split convention, on the first rope_dims of each head (partial
// RoPE when rope_dims < head_dim; the remaining dims pass through). Pair i of the rotated slice is
// (x_i, x_{i+rd/2}) with angle pos * base^(-2i/rd).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "pgolf/core/error.hpp"

namespace pgolf::ops::cpu {

template <class T>
struct RopeTable {
  int seq_len = 0, rope_dims = 0;
  std::vector<T> cos, sin;  // [seq_len, rope_dims / 2]

  RopeTable() = default;
  RopeTable(int seq_len_, int rope_dims_, double base) : seq_len(seq_len_), rope_dims(rope_dims_) {
    PGOLF_CHECK(rope_dims % 2 == 0, "RoPE dims must be even, got ", rope_dims);
    const int half = rope_dims / 2;
    cos.resize(std::size_t(seq_len) * half);
    sin.resize(std::size_t(seq_len) * half);
    for (int t = 0; t < seq_len; ++t)
      for (int i = 0; i < half; ++i) {
        const double inv_freq = 1.0 / std::pow(base, double(2 * i) / double(rope_dims));
        const double angle = double(t) * inv_freq;
        cos[std::size_t(t) * half + i] = T(std::cos(angle));
        sin[std::size_t(t) * half + i] = T(std::sin(angle));
      }
  }
};

// x, y: [B, T, heads, head_dim]. y = R(pos) x. In-place (x == y) is allowed.
template <class T>
void rope_forward(const T* x, T* y, int B, int seq, int heads, int head_dim, const RopeTable<T>& rt) {
  PGOLF_CHECK(rt.seq_len >= seq, "RoPE table covers ", rt.seq_len, " positions, sequence has ", seq);
  const int half = rt.rope_dims / 2;
#pragma omp parallel for schedule(static)
  for (long bt = 0; bt < long(B) * seq; ++bt) {
    const int t = int(bt % seq);
    const T* c = rt.cos.data() + std::size_t(t) * half;
    const T* s = rt.sin.data() + std::size_t(t) * half;
    for (int h = 0; h < heads; ++h) {
      const T* xi = x + (std::size_t(bt) * heads + h) * head_dim;
      T* yi = y + (std::size_t(bt) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const T a = xi[i], b = xi[i + half];
        yi[i] = a * c[i] + b * s[i];
        yi[i + half] = -a * s[i] + b * c[i];
      }
      for (int i = rt.rope_dims; i < head_dim; ++i) yi[i] = xi[i];
    }
  }
}

// dx = R(pos)^T dy. In-place (dy == dx) is allowed.
template <class T>
void rope_backward(const T* dy, T* dx, int B, int seq, int heads, int head_dim, const RopeTable<T>& rt) {
  const int half = rt.rope_dims / 2;
#pragma omp parallel for schedule(static)
  for (long bt = 0; bt < long(B) * seq; ++bt) {
    const int t = int(bt % seq);
    const T* c = rt.cos.data() + std::size_t(t) * half;
    const T* s = rt.sin.data() + std::size_t(t) * half;
    for (int h = 0; h < heads; ++h) {
      const T* gi = dy + (std::size_t(bt) * heads + h) * head_dim;
      T* di = dx + (std::size_t(bt) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const T a = gi[i], b = gi[i + half];
        di[i] = a * c[i] - b * s[i];
        di[i + half] = a * s[i] + b * c[i];
      }
      for (int i = rt.rope_dims; i < head_dim; ++i) di[i] = gi[i];
    }
  }
}

}  // namespace pgolf::ops::cpu
