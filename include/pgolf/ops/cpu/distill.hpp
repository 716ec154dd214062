// Self-distillation loss (TECHNIQUES.md 7.6) over N rows of student logits z_s and teacher logits
// z_t [N, V] (both after the softcap), with temperature tau and mix alpha:
//   L = alpha * tau^2 * sum_n KL(softmax(z_t,n / tau) || softmax(z_s,n / tau)) / D
//     + (1 - alpha) * sum_n CE(z_s,n, y_n) / scored
// over scored rows (target >= 0). D = scored rows: the KL normalised per token (the default), or
// D = rows of the batch: the seed's PyTorch "batchmean" over [B, T, V], a per-sequence sum whose KL
// term dominates the loss (per_sequence). The gradient w.r.t. z_s, per scored row:
//   (1 - alpha) / scored * (softmax(z_s) - onehot(y)) + alpha * tau / D * (softmax(z_s / tau) - softmax(z_t / tau)).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pgolf/core/error.hpp"
#include "pgolf/ops/cpu/cross_entropy.hpp"

namespace pgolf::ops::cpu {

struct DistillOptions {
  double temperature = 2.0;   // tau
  double alpha = 0.7;         // weight of the KL term
  bool per_sequence = false;  // the seed's normalisation: divide the KL sum by the batch's rows only
  int batch_rows = 1;         // B, for per_sequence

  void validate() const {
    PGOLF_CHECK(std::isfinite(temperature) && temperature > 0, "distill_temperature must be > 0, got ", temperature);
    PGOLF_CHECK(alpha >= 0 && alpha <= 1, "distill_alpha must be in [0, 1], got ", alpha);
    PGOLF_CHECK(batch_rows >= 1, "distillation: batch_rows must be >= 1, got ", batch_rows);
  }
};

namespace detail {
// max and sum of exp((z_i - max) * k) over a row: softmax(k z)_i = exp((z_i - m) k) / s.
template <class T>
void softmax_stats(const T* z, int V, T k, T& m, T& s) {
  m = z[0];
  for (int i = 1; i < V; ++i) m = z[i] > m ? z[i] : m;
  s = 0;
  for (int i = 0; i < V; ++i) s += std::exp((z[i] - m) * k);
}
}  // namespace detail

// The loss from its parts (ce_mean: the mean cross-entropy over scored rows; kl_sum: the KL summed
// over them) and the gradient's two coefficients, shared by this reference and the CUDA kernels
// (ops/cuda/distill.cuh) so both backends normalise alike.
inline double distill_loss(const DistillOptions& o, double ce_mean, double kl_sum, std::size_t scored) {
  const double D = o.per_sequence ? double(o.batch_rows) : double(std::max<std::size_t>(scored, 1));
  return o.alpha * o.temperature * o.temperature * kl_sum / D + (1 - o.alpha) * ce_mean;
}
struct DistillScales {
  double ce, kl;  // dz = ce * (softmax(z_s) - onehot(y)) + kl * (softmax(z_s / tau) - softmax(z_t / tau))
};
inline DistillScales distill_scales(const DistillOptions& o, std::size_t scored, double grad_scale) {
  const double n = double(std::max<std::size_t>(scored, 1));
  const double D = o.per_sequence ? double(o.batch_rows) : n;
  return {grad_scale * (1 - o.alpha) / n, grad_scale * o.alpha * o.temperature / D};
}

// Returns L; row_ce[n] = the student's cross-entropy of row n (0 where not scored), as evaluation
// and the logged loss read it.
template <class T>
double distill_forward(const T* zs, const T* zt, const std::int32_t* targets, std::size_t N, int V,
                       const DistillOptions& o, T* row_ce) {
  const double ce = cross_entropy_forward(zs, targets, N, V, row_ce);
  const T k = T(1.0 / o.temperature);
  double kl = 0;
  for (std::size_t n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    const T *s_row = zs + n * V, *t_row = zt + n * V;
    T ms, ss, mt, st;
    detail::softmax_stats(s_row, V, k, ms, ss);
    detail::softmax_stats(t_row, V, k, mt, st);
    // KL = sum_i p_t,i (log p_t,i - log p_s,i), log p = (z - m) k - log s.
    double row = 0;
    for (int i = 0; i < V; ++i) {
      const double lt = double((t_row[i] - mt) * k) - std::log(double(st));
      const double ls = double((s_row[i] - ms) * k) - std::log(double(ss));
      row += std::exp(lt) * (lt - ls);
    }
    kl += row;
  }
  return distill_loss(o, ce, kl, scored_rows(targets, N));
}

// dz = grad_scale * dL/dz_s; dz may alias zs (each element is read before it is written). The CE
// part is computed as cross_entropy_backward computes it, so alpha = 0 gives its gradient bit for bit.
template <class T>
void distill_backward(const T* zs, const T* zt, const std::int32_t* targets, std::size_t N, int V,
                      const DistillOptions& o, double grad_scale, T* dz) {
  const T k = T(1.0 / o.temperature);
  const DistillScales a = distill_scales(o, scored_rows(targets, N), grad_scale);
  const T a_ce = T(a.ce), a_kl = T(a.kl);
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n) {
    const T *s_row = zs + n * V, *t_row = zt + n * V;
    T* d = dz + n * V;
    if (targets[n] < 0) {
      for (int i = 0; i < V; ++i) d[i] = T(0);
      continue;
    }
    T m1, s1, ms, ss, mt, st;
    detail::softmax_stats(s_row, V, T(1), m1, s1);
    detail::softmax_stats(s_row, V, k, ms, ss);
    detail::softmax_stats(t_row, V, k, mt, st);
    const int y = targets[n];
    const T inv1 = T(1) / s1, invs = T(1) / ss, invt = T(1) / st;
    for (int i = 0; i < V; ++i) {
      const T ps = std::exp((s_row[i] - ms) * k) * invs, pt = std::exp((t_row[i] - mt) * k) * invt;
      d[i] = a_ce * (std::exp(s_row[i] - m1) * inv1 - (i == y ? T(1) : T(0))) + a_kl * (ps - pt);
    }
  }
}

}  // namespace pgolf::ops::cpu
