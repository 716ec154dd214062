// The Multi-Rate Bus's recurrence and gated read-out (PRISM; ../shared PRISM.md section 2.2).
//
// Channels [k*d_r, (k+1)*d_r) of a D-wide stream form group k (K groups, d_r = D/K), each with a
// fixed decay gamma_k = exp(-delta_k), the deltas log-spaced from delta0 to delta_max:
//   h(t) = gamma_k * h(t-1) + (1 - gamma_k) * z(t),  h(-1) = 0      (a normalised low-pass filter)
//   u(t) = g_k(t) * h(t)                                             (one read-out gate per group)
// The reference evaluates the scan in parallel as gamma^t * cumsum(gamma^-s (1-gamma) z(s)), which
// overflows to inf/NaN once gamma^-T exceeds the float64 range (T = 129 for its fastest group).
// Here the scan is the recurrence itself, a contraction, so it is exact and finite for any T.
// Backward: dz(t) = (1 - gamma) a(t) with a(t) = dh(t) + gamma a(t+1), a reverse scan; the decays
// are constants and get no gradient.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "pgolf/core/error.hpp"

namespace pgolf::ops::cpu {

// gamma_k = exp(-delta_k), delta_k = exp(ln delta0 + (ln delta_max - ln delta0) k / (K - 1)); K = 1: delta0.
inline std::vector<double> mrb_decays(int K, double delta0, double delta_max) {
  PGOLF_CHECK(K >= 1, "multi-rate bus: num_rates must be at least 1, got ", K);
  PGOLF_CHECK(delta0 > 0 && delta_max >= delta0, "multi-rate bus: need 0 < delta0 <= delta_max, got ", delta0, " and ",
              delta_max);
  std::vector<double> decay(static_cast<std::size_t>(K));
  for (int k = 0; k < K; ++k) {
    const double f = K == 1 ? 0.0 : double(k) / double(K - 1);
    decay[std::size_t(k)] = std::exp(-std::exp(std::log(delta0) + (std::log(delta_max) - std::log(delta0)) * f));
  }
  return decay;
}

struct MrbShape {
  int B, T, D, K;
  int group_width() const { return D / K; }
  std::size_t at(int b, int t, int c) const { return (std::size_t(b) * T + t) * D + c; }
};

// z, h: [B, T, D].
template <class T>
void mrb_scan_forward(const T* z, const MrbShape& s, const std::vector<double>& gamma, T* h) {
  PGOLF_CHECK(s.K > 0 && s.D % s.K == 0, "multi-rate bus: ", s.K, " rates do not divide the width ", s.D);
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < s.B; ++b)
    for (int c = 0; c < s.D; ++c) {
      const T g = T(gamma[std::size_t(c / s.group_width())]);
      T state = 0;
      for (int t = 0; t < s.T; ++t) {
        state = g * state + (T(1) - g) * z[s.at(b, t, c)];
        h[s.at(b, t, c)] = state;
      }
    }
}

// dz = d loss / d z from dh = d loss / d h (dz may alias dh).
template <class T>
void mrb_scan_backward(const T* dh, const MrbShape& s, const std::vector<double>& gamma, T* dz) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < s.B; ++b)
    for (int c = 0; c < s.D; ++c) {
      const T g = T(gamma[std::size_t(c / s.group_width())]);
      T a = 0;
      for (int t = s.T - 1; t >= 0; --t) {
        a = dh[s.at(b, t, c)] + g * a;
        dz[s.at(b, t, c)] = (T(1) - g) * a;
      }
    }
}

// u = g (per group) * h;  gate: [B, T, K].
template <class T>
void mrb_gate_forward(const T* h, const T* gate, const MrbShape& s, T* u) {
  const int w = s.group_width();
#pragma omp parallel for schedule(static)
  for (long bt = 0; bt < long(s.B) * s.T; ++bt)
    for (int c = 0; c < s.D; ++c) u[std::size_t(bt) * s.D + c] = gate[std::size_t(bt) * s.K + c / w] * h[std::size_t(bt) * s.D + c];
}

// dh = g * du (written); dgate[k] = sum over the group's channels of du * h (written).
template <class T>
void mrb_gate_backward(const T* du, const T* h, const T* gate, const MrbShape& s, T* dh, T* dgate) {
  const int w = s.group_width();
#pragma omp parallel for schedule(static)
  for (long bt = 0; bt < long(s.B) * s.T; ++bt)
    for (int k = 0; k < s.K; ++k) {
      const std::size_t row = std::size_t(bt) * s.D;
      const T g = gate[std::size_t(bt) * s.K + k];
      T acc = 0;
      for (int c = k * w; c < (k + 1) * w; ++c) {
        acc += du[row + c] * h[row + c];
        dh[row + c] = g * du[row + c];
      }
      dgate[std::size_t(bt) * s.K + k] = acc;
    }
}

}  // namespace pgolf::ops::cpu
