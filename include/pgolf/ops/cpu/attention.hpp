// Causal self-attention with grouped KV heads and a learned per-head query gain:
//   s_tj = gain_h * (q_t . k_j) / sqrt(D)   for j <= t,   y_t = softmax_j(s_t) v.
// Query head h reads KV head h / (H / Hkv). The forward saves only the log-sum-exp of each row;
// the backward recomputes the probabilities (the flash-attention scheme: saved memory is O(T), not
// O(T^2), and the CUDA kernels can be checked against exactly this computation).
// Document masking (optional): with doc_start set, query t of row b sees only keys
// j in [doc_start[b*T + t], t], so attention never crosses into an earlier document of a packed row
// (the records' varlen attention); document_starts() derives the starts from the token ids.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "pgolf/ops/cpu/blas.hpp"

namespace pgolf::ops::cpu {

struct AttentionShape {
  int B, T, H, Hkv, D;
  const std::int32_t* doc_start = nullptr;  // [B*T], or nullptr: plain causal
  int first_key(int b, int t) const { return doc_start ? doc_start[std::size_t(b) * T + t] : 0; }
  std::size_t q_index(int b, int t, int h) const { return ((std::size_t(b) * T + t) * H + h) * D; }
  std::size_t kv_index(int b, int t, int g) const { return ((std::size_t(b) * T + t) * Hkv + g) * D; }
  std::size_t lse_index(int b, int h, int t) const { return (std::size_t(b) * H + h) * T + t; }
};

// starts[b*T + t] := the last position s <= t of row b whose token is bos (0 if none): a document
// begins at its BOS, and the tokens before a row's first BOS (a document cut by the row start) form
// one more. ids: [B*T].
inline void document_starts(const std::int32_t* ids, int B, int T, std::int32_t bos, std::int32_t* starts) {
  for (int b = 0; b < B; ++b) {
    std::int32_t start = 0;
    for (int t = 0; t < T; ++t) {
      const std::size_t n = std::size_t(b) * T + t;
      if (ids[n] == bos) start = t;
      starts[n] = start;
    }
  }
}

template <class T>
T dot(const T* a, const T* b, int n) {
  T s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// The work per (batch, head) runs as matrix products over blocks of kBlock query rows: a block
// of rows [r0, r1) only sees keys [0, r1), so the causal mask skips the upper triangle's blocks;
// with documents it sees keys [doc_start[r0], r1), so the keys before its documents are skipped too.
inline constexpr int kAttentionBlock = 64;

// q: [B,T,H,D], k, v: [B,T,Hkv,D], gain: [H]; y: [B,T,H,D], lse: [B,H,T].
template <class T>
void attention_forward(const T* q, const T* k, const T* v, const T* gain, const AttentionShape& s, T* y, T* lse) {
  const int group = s.H / s.Hkv;
  const T scale = T(1) / std::sqrt(T(s.D));
  const int ldq = s.H * s.D, ldk = s.Hkv * s.D;
#pragma omp parallel
  {
    std::vector<T> P(std::size_t(kAttentionBlock) * s.T);
#pragma omp for schedule(dynamic) collapse(2)
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h) {
        const int g = h / group;
        const T c = gain[h] * scale;
        const T* K = k + s.kv_index(b, 0, g);
        const T* V = v + s.kv_index(b, 0, g);
        for (int r0 = 0; r0 < s.T; r0 += kAttentionBlock) {
          // Keys [k0, r1): k0 is the block's smallest document start (starts never decrease), 0
          // without documents; p[j - k0] is key j's score.
          const int r1 = std::min(s.T, r0 + kAttentionBlock), rows = r1 - r0, k0 = s.first_key(b, r0), w = r1 - k0;
          const T* Kb = K + std::size_t(k0) * ldk;
          gemm_serial(false, true, rows, w, s.D, c, q + s.q_index(b, r0, h), ldq, Kb, ldk, T(0), P.data(), w);
          for (int i = 0; i < rows; ++i) {
            const int t = r0 + i;
            const int lo = s.first_key(b, t) - k0, hi = t - k0;  // visible: [lo, hi] of this row
            T* p = P.data() + std::size_t(i) * w;
            T m = -std::numeric_limits<T>::infinity();
            for (int j = lo; j <= hi; ++j) m = p[j] > m ? p[j] : m;
            T l = 0;
            for (int j = lo; j <= hi; ++j) l += (p[j] = std::exp(p[j] - m));
            const T inv = T(1) / l;
            for (int j = lo; j <= hi; ++j) p[j] *= inv;
            for (int j = 0; j < lo; ++j) p[j] = 0;
            for (int j = hi + 1; j < w; ++j) p[j] = 0;
            lse[s.lse_index(b, h, t)] = m + std::log(l);
          }
          gemm_serial(false, false, rows, s.D, w, T(1), P.data(), w, V + std::size_t(k0) * ldk, ldk, T(0),
                      y + s.q_index(b, r0, h), ldq);
        }
      }
  }
}

// Overwrites dq, dk and (unless accumulate_dv: then adds into it) dv; adds into dgain. Work is split by (batch, KV head) so each thread owns
// the dk/dv rows it writes; the gain gradient is reduced in a fixed order (deterministic).
//   P = exp(c QK^T - lse), dV += P^T dY, dP = dY V^T, dS = P (dP - rowsum(dY y)),
//   dQ = c dS K, dK += c dS^T Q, dgain = scale * sum(dS * QK^T).
template <class T>
void attention_backward(const T* dy, const T* q, const T* k, const T* v, const T* gain, const T* y, const T* lse,
                        const AttentionShape& s, T* dq, T* dk, T* dv, T* dgain, bool accumulate_dv = false) {
  const int group = s.H / s.Hkv;
  const T scale = T(1) / std::sqrt(T(s.D));
  const int ldq = s.H * s.D, ldk = s.Hkv * s.D;
  std::vector<T> dgain_part(std::size_t(s.B) * s.H, T(0));
#pragma omp parallel
  {
    const std::size_t block = std::size_t(kAttentionBlock) * s.T;
    std::vector<T> QK(block), P(block), dP(block);
#pragma omp for schedule(dynamic) collapse(2)
    for (int b = 0; b < s.B; ++b)
      for (int g = 0; g < s.Hkv; ++g) {
        const T* K = k + s.kv_index(b, 0, g);
        const T* V = v + s.kv_index(b, 0, g);
        T* dK = dk + s.kv_index(b, 0, g);
        T* dV = dv + s.kv_index(b, 0, g);
        for (int t = 0; t < s.T; ++t)
          for (int d = 0; d < s.D; ++d) {
            dK[std::size_t(t) * ldk + d] = 0;
            if (!accumulate_dv) dV[std::size_t(t) * ldk + d] = 0;
          }
        for (int h = g * group; h < (g + 1) * group; ++h) {
          const T c = gain[h] * scale;
          T dg = 0;
          for (int r0 = 0; r0 < s.T; r0 += kAttentionBlock) {
            // Keys [k0, r1), as in the forward; column j - k0 of the block's matrices is key j.
            const int r1 = std::min(s.T, r0 + kAttentionBlock), rows = r1 - r0, k0 = s.first_key(b, r0), w = r1 - k0;
            const std::size_t kv = std::size_t(k0) * ldk;
            const T* Q = q + s.q_index(b, r0, h);
            const T* dY = dy + s.q_index(b, r0, h);
            gemm_serial(false, true, rows, w, s.D, T(1), Q, ldq, K + kv, ldk, T(0), QK.data(), w);
            gemm_serial(false, true, rows, w, s.D, T(1), dY, ldq, V + kv, ldk, T(0), dP.data(), w);
            for (int i = 0; i < rows; ++i) {
              const int t = r0 + i;
              const std::size_t row = std::size_t(i) * w;
              const T Dt = dot(dY + std::size_t(i) * ldq, y + s.q_index(b, t, h), s.D);
              const T l = lse[s.lse_index(b, h, t)];
              const int lo = s.first_key(b, t) - k0, hi = t - k0;
              for (int j = 0; j < lo; ++j) P[row + j] = dP[row + j] = 0;
              for (int j = lo; j <= hi; ++j) {
                const T p = std::exp(c * QK[row + j] - l);
                const T ds = p * (dP[row + j] - Dt);
                P[row + j] = p;
                dg += ds * QK[row + j];
                dP[row + j] = ds;  // dP now holds dS
              }
              for (int j = hi + 1; j < w; ++j) P[row + j] = dP[row + j] = 0;
            }
            gemm_serial(true, false, w, s.D, rows, T(1), P.data(), w, dY, ldq, T(1), dV + kv, ldk);
            gemm_serial(false, false, rows, s.D, w, c, dP.data(), w, K + kv, ldk, T(0), dq + s.q_index(b, r0, h), ldq);
            gemm_serial(true, false, w, s.D, rows, c, dP.data(), w, Q, ldq, T(1), dK + kv, ldk);
          }
          dgain_part[std::size_t(b) * s.H + h] = dg * scale;
        }
      }
  }
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) dgain[h] += dgain_part[std::size_t(b) * s.H + h];
}

}  // namespace pgolf::ops::cpu
