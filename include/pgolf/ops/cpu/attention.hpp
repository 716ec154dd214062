// Causal self-attention with grouped KV heads and a learned per-head query gain:
//   s_tj = gain_h * (q_t . k_j) / sqrt(D)   for j <= t,   y_t = softmax_j(s_t) v.
// Query head h reads KV head h / (H / Hkv). The forward saves only the log-sum-exp of each row;
// the backward recomputes the probabilities (the flash-attention scheme, so memory is O(T), not
// O(T^2), and the CUDA kernels can be checked against exactly this computation).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace pgolf::ops::cpu {

struct AttentionShape {
  int B, T, H, Hkv, D;
  std::size_t q_index(int b, int t, int h) const { return ((std::size_t(b) * T + t) * H + h) * D; }
  std::size_t kv_index(int b, int t, int g) const { return ((std::size_t(b) * T + t) * Hkv + g) * D; }
  std::size_t lse_index(int b, int h, int t) const { return (std::size_t(b) * H + h) * T + t; }
};

template <class T>
T dot(const T* a, const T* b, int n) {
  T s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// q: [B,T,H,D], k, v: [B,T,Hkv,D], gain: [H]; y: [B,T,H,D], lse: [B,H,T].
template <class T>
void attention_forward(const T* q, const T* k, const T* v, const T* gain, const AttentionShape& s, T* y, T* lse) {
  const int group = s.H / s.Hkv;
  const T scale = T(1) / std::sqrt(T(s.D));
#pragma omp parallel
  {
    std::vector<T> score(s.T);
#pragma omp for schedule(dynamic) collapse(2)
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h) {
        const int g = h / group;
        const T c = gain[h] * scale;
        for (int t = 0; t < s.T; ++t) {
          const T* qt = q + s.q_index(b, t, h);
          T m = -std::numeric_limits<T>::infinity();
          for (int j = 0; j <= t; ++j) {
            score[j] = c * dot(qt, k + s.kv_index(b, j, g), s.D);
            m = score[j] > m ? score[j] : m;
          }
          T l = 0;
          T* yt = y + s.q_index(b, t, h);
          for (int d = 0; d < s.D; ++d) yt[d] = 0;
          for (int j = 0; j <= t; ++j) {
            const T p = std::exp(score[j] - m);
            l += p;
            const T* vj = v + s.kv_index(b, j, g);
            for (int d = 0; d < s.D; ++d) yt[d] += p * vj[d];
          }
          for (int d = 0; d < s.D; ++d) yt[d] /= l;
          lse[s.lse_index(b, h, t)] = m + std::log(l);
        }
      }
  }
}

// Overwrites dq, dk, dv; adds into dgain. Work is split by (batch, KV head) so each thread owns
// the dk/dv rows it writes; the gain gradient is reduced in a fixed order (deterministic).
template <class T>
void attention_backward(const T* dy, const T* q, const T* k, const T* v, const T* gain, const T* y, const T* lse,
                        const AttentionShape& s, T* dq, T* dk, T* dv, T* dgain) {
  const int group = s.H / s.Hkv;
  const T scale = T(1) / std::sqrt(T(s.D));
  std::vector<T> dgain_part(std::size_t(s.B) * s.H, T(0));
#pragma omp parallel for schedule(dynamic) collapse(2)
  for (int b = 0; b < s.B; ++b)
    for (int g = 0; g < s.Hkv; ++g) {
      for (int t = 0; t < s.T; ++t) {
        T* dkt = dk + s.kv_index(b, t, g);
        T* dvt = dv + s.kv_index(b, t, g);
        for (int d = 0; d < s.D; ++d) dkt[d] = dvt[d] = 0;
      }
      for (int h = g * group; h < (g + 1) * group; ++h) {
        const T c = gain[h] * scale;
        T dg = 0;
        for (int t = 0; t < s.T; ++t) {
          const T* qt = q + s.q_index(b, t, h);
          const T* dyt = dy + s.q_index(b, t, h);
          T* dqt = dq + s.q_index(b, t, h);
          for (int d = 0; d < s.D; ++d) dqt[d] = 0;
          const T Dt = dot(dyt, y + s.q_index(b, t, h), s.D);
          const T l = lse[s.lse_index(b, h, t)];
          for (int j = 0; j <= t; ++j) {
            const T* kj = k + s.kv_index(b, j, g);
            const T* vj = v + s.kv_index(b, j, g);
            const T qk = dot(qt, kj, s.D);
            const T p = std::exp(c * qk - l);
            const T ds = p * (dot(dyt, vj, s.D) - Dt);
            T* dkj = dk + s.kv_index(b, j, g);
            T* dvj = dv + s.kv_index(b, j, g);
            for (int d = 0; d < s.D; ++d) {
              dvj[d] += p * dyt[d];
              dqt[d] += ds * c * kj[d];
              dkj[d] += ds * c * qt[d];
            }
            dg += ds * scale * qk;
          }
        }
        dgain_part[std::size_t(b) * s.H + h] = dg;
      }
    }
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) dgain[h] += dgain_part[std::size_t(b) * s.H + h];
}

}  // namespace pgolf::ops::cpu
